package update

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pith-os/pith/rebootlock"
)

// UnitState is one unit the cluster scheduler placed on this machine:
// what it should be (desired: launched, loaded, inactive) and systemd's
// state of it (active: "" when not known yet).
type UnitState struct {
	Name    string
	Desired string
	Active  string
	Sub     string
	// ActiveFor is how long the unit has been active since it last
	// (re)started.
	ActiveFor time.Duration
}

// DefaultUnitSettle is how long every launched unit must have been
// running, without a restart, for the node to count as healthy after an
// update. A unit that fails at once is still "active" for an instant
// after its start: a health check that took that instant for health
// marked a release good whose unit never ran, and a crash-looping unit
// is active between its restarts.
const DefaultUnitSettle = 20 * time.Second

// ScheduledUnits lists the units the scheduler assigned to this machine.
// pithd backs it with the fleet API; the update package does not import
// the scheduler.
type ScheduledUnits interface {
	MachineUnits(ctx context.Context) ([]UnitState, error)
}

// unitsStarted is nil when every unit that should run here (launched)
// has been running for at least settle. A failed unit, or one restarting
// after a crash, is named in the error; so is one still starting or
// running for less than settle.
func unitsStarted(units []UnitState, settle time.Duration) error {
	var failed, waiting []string
	for _, u := range units {
		if u.Desired != "launched" {
			continue
		}
		switch {
		case u.Active == "failed", u.Active == "activating" && u.Sub == "auto-restart":
			failed = append(failed, u.Name+" ("+u.Active+"/"+u.Sub+")")
		case u.Active == "reloading":
		case u.Active == "active":
			if u.ActiveFor < settle {
				waiting = append(waiting, fmt.Sprintf("%s (active %s of %s)", u.Name, u.ActiveFor.Round(time.Second), settle))
			}
		default:
			state := u.Active
			if state == "" {
				state = "no report yet"
			}
			waiting = append(waiting, u.Name+" ("+state+")")
		}
	}
	sort.Strings(failed)
	sort.Strings(waiting)
	if len(failed) > 0 {
		return fmt.Errorf("scheduled units failed: %s", strings.Join(failed, ", "))
	}
	if len(waiting) > 0 {
		return fmt.Errorf("scheduled units not started yet: %s", strings.Join(waiting, ", "))
	}
	return nil
}

// HealthCheck returns an Agent.Healthy that waits, polling every retry,
// until the KV answers a quorum read (this node rejoined the cluster and a
// leader exists) and every unit the scheduler launched here has been
// running for settle (DefaultUnitSettle when 0). kv or units may be nil
// (no cluster, no scheduler). report gets the reason while it waits (for
// pithctl update status).
func HealthCheck(kv rebootlock.KV, units ScheduledUnits, retry, settle time.Duration, report func(string)) func(context.Context) error {
	if settle <= 0 {
		settle = DefaultUnitSettle
	}
	if report == nil {
		report = func(string) {}
	}
	check := func(ctx context.Context) error {
		if kv != nil {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _, err := kv.Get(rctx, rebootlock.SemaphoreKey)
			cancel()
			if err != nil && !errors.Is(err, rebootlock.ErrKeyNotFound) {
				return fmt.Errorf("KV quorum read: %w", err)
			}
		}
		if units != nil {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			us, err := units.MachineUnits(rctx)
			cancel()
			if err != nil {
				return fmt.Errorf("scheduled units: %w", err)
			}
			return unitsStarted(us, settle)
		}
		return nil
	}
	return func(ctx context.Context) error {
		for {
			err := check(ctx)
			if err == nil {
				report("")
				return nil
			}
			report("waiting to mark the new release good: " + err.Error())
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
			case <-time.After(retry):
			}
		}
	}
}
