package schedule

import (
	"context"
	"fmt"
	"sort"
	"strings"
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

type mstate struct {
	m      *Machine
	load   int
	global int // global units that run there (not in load)
	pos    int
	ord    int // rank of the ID, a cheap tie-breaker
	units  map[string]*plan
	status MachineStatus
	place  bool
}

type plan struct {
	u       *Unit
	machine string
	reason  string
	pending bool
}

type planner struct {
	machines map[string]*mstate
	order    []*mstate // placeable machines, by (load, id)
	plans    map[string]*plan
	queue    []*plan
}

func (p *planner) less(a, b *mstate) bool {
	return a.load < b.load || a.load == b.load && a.ord < b.ord
}

func (p *planner) assign(pl *plan, id string) {
	ms := p.machines[id]
	pl.machine, pl.reason, pl.pending = id, "", false
	ms.units[pl.u.Name] = pl
	ms.load++
	if ms.place {
		// Bubble right to keep order sorted.
		for i := ms.pos; i+1 < len(p.order) && p.less(p.order[i+1], ms); i++ {
			p.order[i], p.order[i+1] = p.order[i+1], p.order[i]
			p.order[i].pos, p.order[i+1].pos = i, i+1
		}
	}
}

func (p *planner) unassign(pl *plan, reason string) {
	if ms := p.machines[pl.machine]; ms != nil {
		delete(ms.units, pl.u.Name)
		ms.load--
		if ms.place {
			for i := ms.pos; i > 0 && p.less(ms, p.order[i-1]); i-- {
				p.order[i], p.order[i-1] = p.order[i-1], p.order[i]
				p.order[i].pos, p.order[i-1].pos = i, i-1
			}
		}
	}
	pl.machine, pl.reason = "", reason
	if !pl.pending {
		pl.pending = true
		p.queue = append(p.queue, pl)
	}
}

// conflicts reports whether a and b may not share a machine. Replaces
// counts from the replaced unit's side only: b replaces a keeps a away.
func conflicts(a, b *Unit) bool {
	for _, c := range a.req.Conflicts {
		if globMatch(c, b.Name) {
			return true
		}
	}
	for _, c := range b.req.Conflicts {
		if globMatch(c, a.Name) {
			return true
		}
	}
	return replaces(b, a)
}

// replaces reports whether a's Replaces names b (mutual replacement is
// ignored, as in fleet, since it could never settle).
func replaces(a, b *Unit) bool {
	ab, ba := false, false
	for _, r := range a.req.Replaces {
		if globMatch(r, b.Name) {
			ab = true
			break
		}
	}
	if !ab {
		return false
	}
	for _, r := range b.req.Replaces {
		if globMatch(r, a.Name) {
			ba = true
			break
		}
	}
	return !ba
}

func hasSchedReqs(u *Unit) bool {
	return len(u.req.Conflicts) > 0 || len(u.req.Replaces) > 0
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
	}
	return st, nil
}

// Plan computes the placements that bring State in line with the rules,
// without proposing them.
func (e *Engine) Plan() ([]Placement, ReconcileStats) {
	state := e.Store.State()
	units := state.Units()
	p := &planner{machines: map[string]*mstate{}, plans: make(map[string]*plan, len(units))}
	for i, m := range state.Machines() {
		ms := &mstate{m: m, ord: i, units: map[string]*plan{}, status: e.Live.Status(m.ID)}
		ms.place = ms.status == Alive && e.Live.Placeable(m.ID)
		p.machines[m.ID] = ms
	}
	// Current assignments.
	var sched []*plan
	for _, u := range units {
		if u.req.Global || u.Desired == Inactive || IsTemplate(u.Name) {
			continue
		}
		pl := &plan{u: u, machine: u.Machine, reason: u.Reason}
		p.plans[u.Name] = pl
		if ms := p.machines[u.Machine]; u.Machine != "" && ms != nil {
			ms.units[u.Name] = pl
			ms.load++
			sched = append(sched, pl)
		} else {
			pl.machine = ""
			pl.pending = true
			p.queue = append(p.queue, pl)
		}
	}
	// Global units run beside the placed ones and count towards the
	// machine's limit (its heartbeat reports them all).
	for _, u := range units {
		if u.req.Global && u.Desired != Inactive && !IsTemplate(u.Name) {
			for _, ms := range p.machines {
				if u.req.MatchesMetadata(ms.m.Metadata) {
					ms.global++
				}
			}
		}
	}
	for _, ms := range p.machines {
		if ms.place {
			p.order = append(p.order, ms)
		}
	}
	sort.Slice(p.order, func(i, j int) bool { return p.less(p.order[i], p.order[j]) })
	for i, ms := range p.order {
		ms.pos = i
	}

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

// ineligible says why an already placed unit may not stay on ms.
func (p *planner) ineligible(u *Unit, ms *mstate) string {
	if u.req.MachineID != "" && u.req.MachineID != ms.m.ID {
		return "MachineID requires " + u.req.MachineID
	}
	if !u.req.MatchesMetadata(ms.m.Metadata) {
		return "machine " + ms.m.ID + " no longer matches MachineMetadata"
	}
	if !hasSchedReqs(u) {
		// Others' Conflicts/Replaces can still name u.
		for _, o := range ms.units {
			if o.u != u && hasSchedReqs(o.u) && conflicts(u, o.u) && o.u.Name < u.Name {
				return "conflicts with " + o.u.Name
			}
		}
		return ""
	}
	for _, o := range ms.units {
		if o.u == u || !conflicts(u, o.u) {
			continue
		}
		// Of two units already together that may not be, the one named
		// first keeps its place, unless the other replaces it.
		if replaces(o.u, u) || (!replaces(u, o.u) && o.u.Name < u.Name) {
			return "conflicts with " + o.u.Name
		}
	}
	return ""
}

// peerProblem says why a MachineOf follower cannot be on machine id.
func (p *planner) peerProblem(u *Unit, id string) string {
	for _, peer := range u.req.MachineOf {
		pp := p.plans[peer]
		if pp == nil {
			return "MachineOf unit " + peer + " is not scheduled"
		}
		if pp.machine != id {
			if pp.machine == "" {
				return "MachineOf unit " + peer + " is not scheduled"
			}
			if id != "" {
				return "MachineOf unit " + peer + " moved to " + pp.machine
			}
		}
	}
	return ""
}

func (p *planner) setPeerReason(pl *plan) {
	if why := p.peerProblem(pl.u, ""); why != "" {
		pl.reason = why
	}
}

type placeResult int

const (
	notPlaced placeResult = iota
	placed
	waitPeer
)

// place finds the least-loaded eligible machine for pl.
func (p *planner) place(pl *plan) placeResult {
	u := pl.u
	if len(u.req.MachineOf) > 0 {
		target := ""
		for _, peer := range u.req.MachineOf {
			pp := p.plans[peer]
			if pp == nil {
				pl.reason = "MachineOf unit " + peer + " is not scheduled"
				return notPlaced
			}
			if pp.pending {
				return waitPeer
			}
			if target != "" && pp.machine != target {
				pl.reason = "MachineOf units are on different machines (" + target + ", " + pp.machine + ")"
				return notPlaced
			}
			target = pp.machine
		}
		return p.tryOnly(pl, target)
	}
	if u.req.MachineID != "" {
		return p.tryOnly(pl, u.req.MachineID)
	}
	if len(p.order) == 0 {
		pl.reason = "no live machines"
		return notPlaced
	}
	var noMeta, busy, full int
	var example string
	for _, ms := range p.order {
		why, evict := p.fits(u, ms)
		switch why {
		case "":
			p.assign(pl, ms.m.ID)
			for _, v := range evict {
				p.unassign(v, "replaced by "+u.Name)
			}
			return placed
		case fitMeta:
			noMeta++
		case fitFull:
			full++
		default:
			busy++
			if example == "" {
				example = why
			}
		}
	}
	var parts []string
	if noMeta > 0 {
		parts = append(parts, fmt.Sprintf("%d do not match MachineMetadata", noMeta))
	}
	if busy > 0 {
		parts = append(parts, fmt.Sprintf("%d host a conflicting unit (%s)", busy, example))
	}
	if full > 0 {
		parts = append(parts, fmt.Sprintf("%d already run %d units, the most one machine may: add machines", full, MaxUnitsPerMachine))
	}
	pl.reason = fmt.Sprintf("no eligible machine among %d live: %s", len(p.order), strings.Join(parts, ", "))
	return notPlaced
}

const (
	fitMeta = "metadata"
	fitFull = "full"
)

// fits checks u against ms; it returns "" when u may go there, plus the
// units u would evict (Replaces), or a short reason.
func (p *planner) fits(u *Unit, ms *mstate) (string, []*plan) {
	if !u.req.MatchesMetadata(ms.m.Metadata) {
		return fitMeta, nil
	}
	if ms.load+ms.global >= MaxUnitsPerMachine {
		// Its heartbeat could not report one more (MaxHeartbeatSize).
		return fitFull, nil
	}
	var evict []*plan
	mine := hasSchedReqs(u)
	for _, o := range ms.units {
		if !mine && !hasSchedReqs(o.u) {
			continue
		}
		if replaces(u, o.u) {
			evict = append(evict, o)
			continue
		}
		if conflicts(u, o.u) {
			return "conflicts with " + o.u.Name + " on " + ms.m.ID, nil
		}
	}
	sort.Slice(evict, func(i, j int) bool { return evict[i].u.Name < evict[j].u.Name })
	return "", evict
}

func (p *planner) tryOnly(pl *plan, id string) placeResult {
	ms := p.machines[id]
	switch {
	case ms == nil || ms.status != Alive:
		pl.reason = "required machine " + id + " is not live"
		return notPlaced
	case !ms.place:
		pl.reason = "required machine " + id + " is rejoining (held down for one TTL)"
		return notPlaced
	}
	why, evict := p.fits(pl.u, ms)
	switch why {
	case fitMeta:
		pl.reason = "required machine " + id + " does not match MachineMetadata"
		return notPlaced
	case fitFull:
		pl.reason = fmt.Sprintf("required machine %s already runs %d units, the most one machine may", id, MaxUnitsPerMachine)
		return notPlaced
	}
	if why != "" {
		pl.reason = why
		return notPlaced
	}
	p.assign(pl, id)
	for _, v := range evict {
		p.unassign(v, "replaced by "+pl.u.Name)
	}
	return placed
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
