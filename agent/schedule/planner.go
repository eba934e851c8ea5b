package schedule

// The planner: where each unit may go (MachineID, MachineOf, Conflicts,
// Replaces, metadata) and placing units one plan at a time, for Engine.Plan.

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pith-os/pith/unitfile"
)

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
		if unitfile.GlobMatch(c, b.Name) {
			return true
		}
	}
	for _, c := range b.req.Conflicts {
		if unitfile.GlobMatch(c, a.Name) {
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
		if unitfile.GlobMatch(r, b.Name) {
			ab = true
			break
		}
	}
	if !ab {
		return false
	}
	for _, r := range b.req.Replaces {
		if unitfile.GlobMatch(r, a.Name) {
			ba = true
			break
		}
	}
	return !ba
}

func hasSchedReqs(u *Unit) bool {
	return len(u.req.Conflicts) > 0 || len(u.req.Replaces) > 0
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

// newPlanner loads the machines (those that may take units in placement
// order) and the current assignments; it returns the units placed now.
func newPlanner(machines []*Machine, units []*Unit, live *Liveness) (*planner, []*plan) {
	p := &planner{machines: map[string]*mstate{}, plans: make(map[string]*plan, len(units))}
	for i, m := range machines {
		ms := &mstate{m: m, ord: i, units: map[string]*plan{}, status: live.Status(m.ID)}
		ms.place = ms.status == Alive && live.Placeable(m.ID)
		p.machines[m.ID] = ms
	}
	// Current assignments.
	var sched []*plan
	for _, u := range units {
		if u.req.Global || u.Desired == unitfile.Inactive || unitfile.IsTemplate(u.Name) {
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
		if u.req.Global && u.Desired != unitfile.Inactive && !unitfile.IsTemplate(u.Name) {
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
	return p, sched
}
