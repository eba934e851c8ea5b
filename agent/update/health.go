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

// HealthCheck returns an Agent.Healthy that waits, polling every retry
// (or sooner, at the moment the units will have settled), until the KV answers a quorum read (this node rejoined the cluster and a
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
	// check's error is nil when healthy, else why not; with how long to
	// wait before the next check: retry, or less when the units only have
	// to stay up a little longer (the check then comes as they settle).
	check := func(ctx context.Context) (time.Duration, error) {
		if kv != nil {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _, err := kv.Get(rctx, rebootlock.SemaphoreKey)
			cancel()
			if err != nil && !errors.Is(err, rebootlock.ErrKeyNotFound) {
				return retry, fmt.Errorf("KV quorum read: %w", err)
			}
		}
		if units != nil {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			us, err := units.MachineUnits(rctx)
			cancel()
			if err != nil {
				return retry, fmt.Errorf("scheduled units: %w", err)
			}
			wait := retry
			if left, ok := settledIn(us, settle); ok {
				wait = min(wait, left+settleMargin)
			}
			return wait, unitsStarted(us, settle)
		}
		return 0, nil
	}
	return func(ctx context.Context) error {
		for {
			wait, err := check(ctx)
			if err == nil {
				report("")
				return nil
			}
			report("waiting to mark the new release good: " + err.Error())
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
			case <-time.After(wait):
			}
		}
	}
}

// settleMargin is added to the wait for units to settle, so the next
// check does not come an instant too early.
const settleMargin = 100 * time.Millisecond

// settledIn is how long until every launched unit has been running for
// settle, when each one is running now (ok false: one is not, so only a
// later check can tell).
func settledIn(units []UnitState, settle time.Duration) (left time.Duration, ok bool) {
	for _, u := range units {
		if u.Desired != "launched" {
			continue
		}
		switch u.Active {
		case "reloading":
		case "active":
			left = max(left, settle-u.ActiveFor)
		default:
			return 0, false
		}
	}
	return left, true
}
