package schedule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/pith-os/pith/unitfile"
)

// UnitBackend is what the agent needs from agent/units (its Manager
// satisfies it; so does the simulated backend).
type UnitBackend interface {
	Load(ctx context.Context, name string, contents []byte) error
	Unload(ctx context.Context, name string) error
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	Status(ctx context.Context, name string) (load, active, sub string, err error)
	List(ctx context.Context) (map[string]string, error)
}

// Agent makes one machine's systemd match its assignments in the local
// State replica, and reports what it reached for the leader's heartbeat.
//
// Reconciling and heartbeating are independent: a systemd call that takes
// long (a daemon-reload or a stop under load) must never silence the
// machine, or the leader declares it dead after one TTL and moves its units
// away while they start (which is what broke the walkthrough on slow VMs).
type Agent struct {
	Machine Machine
	State   *State
	Backend UnitBackend
	// Gate, if set, holds Run's first reconcile until it is closed (while
	// heartbeats already flow): pithd closes it once the local replica has
	// caught up with the leader. A node starting from an old snapshot
	// would otherwise start units the leader moved away while it was
	// gone, next to their new copies.
	Gate <-chan struct{}

	recMu    sync.Mutex                       // one Reconcile at a time; guards achieved
	achieved map[string]unitfile.DesiredState // what this agent did: loaded/launched

	mu      sync.Mutex // guards reports
	reports []UnitReport
	// changed is signalled when a reconcile changed the reports, so the
	// next heartbeat leaves at once (start sees launched without waiting
	// a full interval).
	changed chan struct{}
}

// NewAgent returns an agent for machine m.
func NewAgent(m Machine, st *State, b UnitBackend) *Agent {
	return &Agent{Machine: m, State: st, Backend: b, achieved: map[string]unitfile.DesiredState{}, changed: make(chan struct{}, 1)}
}

func isActive(active string) bool {
	return active == "active" || active == "activating" || active == "reloading"
}

// Reconcile runs one pass. It keeps going past per-unit errors (reported
// in the unit's report) and returns them joined.
func (a *Agent) Reconcile(ctx context.Context) error {
	want := a.State.Assigned(a.Machine.ID)
	have, err := a.Backend.List(ctx)
	if err != nil {
		return fmt.Errorf("agent: list units: %w", err)
	}
	a.recMu.Lock()
	defer a.recMu.Unlock()
	var errs []error
	wanted := make(map[string]bool, len(want))
	for _, u := range want {
		wanted[u.Name] = true
	}
	// Units no longer ours go first, so a unit replacing one here does not
	// start next to it.
	for _, name := range sortedKeys(have) {
		if wanted[name] {
			continue
		}
		if err := a.Backend.Unload(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(a.achieved, name)
	}
	for name := range a.achieved {
		if !wanted[name] {
			delete(a.achieved, name)
		}
	}
	reports := make([]UnitReport, 0, len(want))
	for _, u := range want {
		r := UnitReport{Name: u.Name, Hash: u.Hash}
		if err := a.apply(ctx, u, have[u.Name]); err != nil {
			r.Error = err.Error()
			errs = append(errs, err)
		}
		r.Current = a.achieved[u.Name]
		r.LoadState, r.ActiveState, r.SubState, err = a.Backend.Status(ctx, u.Name)
		if err != nil {
			errs = append(errs, err)
		}
		reports = append(reports, r)
	}
	sort.Slice(reports, func(i, j int) bool { return reports[i].Name < reports[j].Name })
	a.mu.Lock()
	if !slices.Equal(a.reports, reports) {
		select {
		case a.changed <- struct{}{}:
		default:
		}
	}
	a.reports = reports
	a.mu.Unlock()
	return errors.Join(errs...)
}

func (a *Agent) apply(ctx context.Context, u *Unit, haveHash string) error {
	if _, ok := a.achieved[u.Name]; !ok && haveHash != "" {
		// Found on disk after an agent restart: trust systemd's view, also
		// when the contents changed meanwhile (a running old version must
		// be restarted below, not merely "started").
		_, active, _, err := a.Backend.Status(ctx, u.Name)
		if err != nil {
			return err
		}
		a.achieved[u.Name] = unitfile.Loaded
		if isActive(active) {
			a.achieved[u.Name] = unitfile.Launched
		}
	}
	changed := haveHash != u.Hash
	if changed {
		if err := a.Backend.Load(ctx, u.Name, u.Contents()); err != nil {
			return err
		}
		if haveHash == "" {
			a.achieved[u.Name] = unitfile.Loaded
		}
	}
	switch u.Desired {
	case unitfile.Launched:
		// Start on the way to launched, or restart on new contents. A unit
		// that later fails is left to systemd's Restart=, as fleet did.
		if a.achieved[u.Name] != unitfile.Launched || changed {
			if changed && a.achieved[u.Name] == unitfile.Launched {
				if err := a.Backend.Stop(ctx, u.Name); err != nil {
					return err
				}
			}
			if err := a.Backend.Start(ctx, u.Name); err != nil {
				a.achieved[u.Name] = unitfile.Loaded
				return err
			}
			a.achieved[u.Name] = unitfile.Launched
		}
	case unitfile.Loaded:
		if a.achieved[u.Name] == unitfile.Launched {
			if err := a.Backend.Stop(ctx, u.Name); err != nil {
				return err
			}
		}
		a.achieved[u.Name] = unitfile.Loaded
	}
	return nil
}

// Heartbeat returns what this agent tells the leader.
func (a *Agent) Heartbeat() Heartbeat {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Heartbeat{Machine: a.Machine, Units: append([]UnitReport(nil), a.reports...)}
}

// Run reconciles on every state change and at least every interval, and,
// in its own goroutine, calls beat with a heartbeat every interval and as
// soon as a reconcile changed what this machine reports. beat delivers it
// to the leader (errors there are the caller's to log); a slow beat delays
// only the next beat, a slow reconcile no beat at all.
func (a *Agent) Run(ctx context.Context, interval time.Duration, beat func(Heartbeat), onErr func(error)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if beat != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				beat(a.Heartbeat())
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				case <-a.changed:
				}
			}
		}()
	}
	if a.Gate != nil {
		select {
		case <-ctx.Done():
			return
		case <-a.Gate:
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ch := a.State.Changed()
		if err := a.Reconcile(ctx); err != nil && onErr != nil && ctx.Err() == nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-t.C:
		}
	}
}
