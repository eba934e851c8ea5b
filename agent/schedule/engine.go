package schedule

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Engine is the leader's reconciler: it reads State and Liveness and
// proposes placement batches. It holds no state of its own between runs
// beyond its configuration, so a new leader's engine starts from the log.
type Engine struct {
	Store Store
	Live  *Liveness
	// Term is the leadership term the placements are fenced with; the
	// leader sets it (raft's term) before running.
	Term uint64
	// BatchSize bounds placements per command (one log entry).
	BatchSize int
	// ForgetAfter drops the record of a machine silent this long that
	// holds no units (default DefaultForgetAfter), so replaced machines do
	// not accumulate in the state.
	ForgetAfter time.Duration
	// Placed, when set, hears every placement batch the log took (the
	// member logs them: why a unit moved, and when).
	Placed func([]Placement)
}

// DefaultForgetAfter is how long a dead, empty machine's record is kept.
const DefaultForgetAfter = 24 * time.Hour

// ReconcileStats describes one reconcile pass.
type ReconcileStats struct {
	Registered int // machine records written
	Placed     int // units given a machine
	Moved      int // units taken off a machine (dead, ineligible, evicted)
	Unplaced   int // units that should run but have no machine
	Commands   int // log entries proposed
}

// Reconcile runs one pass: register machines whose heartbeat record changed,
// then compute and propose placements.
func (e *Engine) Reconcile(ctx context.Context) (ReconcileStats, error) {
	var st ReconcileStats
	state := e.Store.State()
	batch := e.BatchSize
	if batch <= 0 {
		batch = 1000
	}
	var changed []*Machine
	for _, m := range e.Live.Live() {
		old := state.Machine(m.ID)
		if old == nil || !sameMachine(old, &m) {
			mm := m
			changed = append(changed, &mm)
		}
	}
	for i := 0; i < len(changed); i += batch {
		j := min(i+batch, len(changed))
		if _, err := e.Store.Propose(ctx, &Command{Op: OpRegisterMachine, Machines: changed[i:j]}); err != nil {
			return st, fmt.Errorf("register machines: %w", err)
		}
		st.Registered += j - i
		st.Commands++
	}
	forget := e.ForgetAfter
	if forget <= 0 {
		forget = DefaultForgetAfter
	}
	for _, m := range state.Machines() {
		if e.Live.Status(m.ID) == Dead && e.Live.SilentFor(m.ID) >= forget && len(state.ScheduledOn(m.ID)) == 0 {
			if _, err := e.Store.Propose(ctx, &Command{Op: OpRemoveMachine, Name: m.ID}); err != nil {
				return st, fmt.Errorf("forget machine %s: %w", m.ID, err)
			}
			st.Commands++
		}
	}
	placements, pst := e.Plan()
	st.Placed, st.Moved, st.Unplaced = pst.Placed, pst.Moved, pst.Unplaced
	for i := 0; i < len(placements); i += batch {
		j := min(i+batch, len(placements))
		_, err := e.Store.Propose(ctx, &Command{Op: OpPlace, Term: e.Term, Placements: placements[i:j]})
		st.Commands++
		if err != nil {
			return st, fmt.Errorf("propose placements: %w", err)
		}
		if e.Placed != nil {
			e.Placed(placements[i:j])
		}
	}
	return st, nil
}

// Plan computes the placements that bring State in line with the rules,
// without proposing them.
func (e *Engine) Plan() ([]Placement, ReconcileStats) {
	state := e.Store.State()
	units := state.Units()
	p, sched := newPlanner(state.Machines(), units, e.Live)

	var st ReconcileStats
	// Phase 1: take units off machines that are dead or no longer eligible.
	for _, pl := range sched {
		ms := p.machines[pl.machine]
		if ms.status == Dead {
			p.unassign(pl, "machine "+ms.m.ID+" is dead")
			continue
		}
		if why := p.ineligible(pl.u, ms); why != "" {
			p.unassign(pl, why)
		}
	}
	// Phase 2: place pending units; a placement may evict (Replaces) or
	// strand followers (MachineOf), so repeat until the queue settles.
	for round := 0; round < 8; round++ {
		// Followers whose peer moved or left go back to the queue.
		for _, pl := range p.plans {
			if !pl.pending && len(pl.u.req.MachineOf) > 0 {
				if why := p.peerProblem(pl.u, pl.machine); why != "" {
					p.unassign(pl, why)
				}
			}
		}
		if len(p.queue) == 0 {
			break
		}
		q := p.queue
		p.queue = nil
		sort.Slice(q, func(i, j int) bool { return q[i].u.Name < q[j].u.Name })
		progress := true
		for progress {
			progress = false
			var deferred []*plan
			for _, pl := range q {
				if !pl.pending {
					continue
				}
				switch p.place(pl) {
				case placed:
					progress = true
				case waitPeer:
					deferred = append(deferred, pl)
				}
			}
			q = deferred
		}
		for _, pl := range q {
			p.setPeerReason(pl)
		}
	}

	var out []Placement
	for _, u := range units {
		pl := p.plans[u.Name]
		if pl == nil {
			continue
		}
		if pl.machine == u.Machine && pl.reason == u.Reason {
			if pl.machine == "" {
				st.Unplaced++
			}
			continue
		}
		out = append(out, Placement{Unit: u.Name, From: u.Machine, To: pl.machine, Reason: pl.reason})
		switch {
		case pl.machine == "":
			st.Unplaced++
			if u.Machine != "" {
				st.Moved++
			}
		case u.Machine == "":
			st.Placed++
		default:
			st.Moved++
			st.Placed++
		}
	}
	return out, st
}

// Run reconciles whenever the state changes and at least every interval,
// until ctx ends. Errors are reported through onErr and retried.
func (e *Engine) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ch, lc := e.Store.State().Changed(), e.Live.Changed()
		if _, err := e.Reconcile(ctx); err != nil && onErr != nil && ctx.Err() == nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-lc:
		case <-t.C:
		}
	}
}
