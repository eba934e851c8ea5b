package daemon

import (
	"fmt"
	"strconv"
	"time"
)

// secondsOrDuration is a duration flag that also takes fleet's form, a
// number of seconds ("2", "0.5"), so FLEET_ENGINE_RECONCILE_INTERVAL as
// CoreOS configs wrote it works unchanged beside pith's "2s".
type secondsOrDuration struct{ d *time.Duration }

func (v secondsOrDuration) String() string {
	if v.d == nil || *v.d == 0 {
		return "0s"
	}
	return v.d.String()
}

func (v secondsOrDuration) Set(s string) error {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f <= 0 {
			return fmt.Errorf("%q: must be positive", s)
		}
		*v.d = time.Duration(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q: give seconds (2, 0.5) or a positive duration (2s)", s)
	}
	*v.d = d
	return nil
}

func (v secondsOrDuration) Type() string { return "duration" }
