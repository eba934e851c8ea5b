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

// UnitState is what the cluster scheduler knows about one unit it placed
// on this machine: what it should be (desired: launched, loaded, inactive)
// and what this machine's scheduler agent last reported from systemd
// (active: "" when no report has come yet).
type UnitState struct {
	Name    string
	Desired string
	Active  string
	Sub     string
}

// ScheduledUnits lists the units the scheduler assigned to this machine.
// pithd backs it with the fleet API; the update package does not import
// the scheduler.
type ScheduledUnits interface {
	MachineUnits(ctx context.Context) ([]UnitState, error)
}

// unitsStarted is nil when every unit that should run here (launched)
// runs: active, or still activating on its first start. A failed unit, or
// one restarting after a crash, is named in the error.
func unitsStarted(units []UnitState) error {
	var failed, waiting []string
	for _, u := range units {
		if u.Desired != "launched" {
			continue
		}
		switch {
		case u.Active == "failed", u.Active == "activating" && u.Sub == "auto-restart":
			failed = append(failed, u.Name+" ("+u.Active+"/"+u.Sub+")")
		case u.Active == "active", u.Active == "reloading":
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
// leader exists) and every unit the scheduler launched here is running.
// kv or units may be nil (no cluster, no scheduler). report gets the
// reason while it waits (for pithctl update status).
func HealthCheck(kv rebootlock.KV, units ScheduledUnits, retry time.Duration, report func(string)) func(context.Context) error {
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
			return unitsStarted(us)
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
