package schedule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/pith-os/pith/unitfile"
)

// Errors Apply returns to the proposer (they are results, not failures of
// replication: every replica computes the same one).
var (
	ErrUnitExists   = errors.New("unit already exists")
	ErrUnitNotFound = errors.New("unit does not exist")
	ErrStaleTerm    = errors.New("placement from an older leadership term")
)

// State is the replicated schedule: units and machine records. Apply is
// deterministic; every replica that applies the same commands in the same
// order ends in the same State.
type State struct {
	mu        sync.RWMutex
	index     uint64
	term      uint64
	units     map[string]*Unit
	machines  map[string]*Machine
	byMachine map[string]map[string]*Unit
	globals   map[string]*Unit
	changed   chan struct{}
}

// NewState returns an empty State.
func NewState() *State {
	return &State{
		units:     map[string]*Unit{},
		machines:  map[string]*Machine{},
		byMachine: map[string]map[string]*Unit{},
		globals:   map[string]*Unit{},
		changed:   make(chan struct{}),
	}
}

// Apply is the raft FSM step (the shape of agent/cluster's StateMachine):
// it decodes one log entry written by EncodeCommand and applies it. It
// always returns an ApplyResult.
func (s *State) Apply(index uint64, data []byte) any {
	cmd, err := DecodeCommand(data)
	if err != nil {
		// Still advance the index so every replica agrees.
		s.mu.Lock()
		if index > s.index {
			s.index = index
		}
		s.mu.Unlock()
		return ApplyResult{Err: err}
	}
	v, err := s.ApplyCommand(index, cmd)
	return ApplyResult{Value: v, Err: err}
}

// Save writes the whole state (agent/cluster's StateMachine.Save).
func (s *State) Save(w io.Writer) error { return s.Snapshot(w) }

// ApplyCommand executes one committed command at log index idx. The
// returned value is the command's result for the proposer: nil, an error,
// or a PlaceResult for OpPlace.
func (s *State) ApplyCommand(idx uint64, cmd *Command) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if idx > s.index {
		s.index = idx
	}
	res, err := s.apply(cmd)
	// Wake watchers even on error: the index moved.
	close(s.changed)
	s.changed = make(chan struct{})
	return res, err
}

func (s *State) apply(cmd *Command) (any, error) {
	switch cmd.Op {
	case OpCreateUnit:
		if cmd.Unit == nil {
			return nil, errors.New("create-unit without unit")
		}
		u, err := NewUnit(cmd.Unit.Name, cmd.Unit.Options, cmd.Unit.Desired)
		if err != nil {
			return nil, err
		}
		if old, ok := s.units[u.Name]; ok {
			if old.Hash == u.Hash {
				return nil, ErrUnitExists
			}
			// New contents replace the old, with the command's desired
			// state; the placement is kept (unless now inactive) and the
			// engine re-checks it against the new requirements.
			if u.Desired != unitfile.Inactive {
				u.Machine = old.Machine
				u.Reason = old.Reason
			}
		}
		s.putUnit(u)
		return nil, nil
	case OpSetDesired:
		old, ok := s.units[cmd.Name]
		if !ok {
			return nil, ErrUnitNotFound
		}
		d, err := unitfile.ParseDesiredState(string(cmd.Desired))
		if err != nil {
			return nil, err
		}
		if unitfile.IsTemplate(old.Name) && d != unitfile.Inactive {
			return nil, fmt.Errorf("unit %s is a template: start an instance of it instead", old.Name)
		}
		if old.Desired == d {
			return nil, nil
		}
		u := *old
		u.Desired = d
		if d == unitfile.Inactive {
			u.Machine, u.Reason = "", ""
		}
		s.putUnit(&u)
		return nil, nil
	case OpDestroyUnit:
		old, ok := s.units[cmd.Name]
		if !ok {
			return nil, ErrUnitNotFound
		}
		s.unindex(old)
		delete(s.units, cmd.Name)
		return nil, nil
	case OpRegisterMachine:
		ms := cmd.Machines
		if cmd.Machine != nil {
			ms = append([]*Machine{cmd.Machine}, ms...)
		}
		if len(ms) == 0 {
			return nil, errors.New("register-machine without machine")
		}
		for _, m := range ms {
			if m == nil || m.ID == "" {
				return nil, errors.New("register-machine without machine ID")
			}
		}
		for _, m := range ms {
			cp := *m
			cp.Metadata = make(map[string]string, len(m.Metadata))
			for k, v := range m.Metadata {
				cp.Metadata[k] = v
			}
			s.machines[m.ID] = &cp
		}
		return nil, nil
	case OpRemoveMachine:
		delete(s.machines, cmd.Name)
		return nil, nil
	case OpPlace:
		if cmd.Term < s.term {
			return PlaceResult{Skipped: len(cmd.Placements)}, ErrStaleTerm
		}
		s.term = cmd.Term
		var r PlaceResult
		for _, p := range cmd.Placements {
			old, ok := s.units[p.Unit]
			if !ok || old.Machine != p.From || (p.To != "" && old.Desired == unitfile.Inactive) {
				r.Skipped++
				continue
			}
			if old.Machine == p.To && old.Reason == p.Reason {
				r.Skipped++
				continue
			}
			u := *old
			u.Machine, u.Reason = p.To, p.Reason
			s.putUnit(&u)
			r.Applied++
		}
		return r, nil
	}
	return nil, fmt.Errorf("unknown schedule command %q", cmd.Op)
}

func (s *State) unindex(u *Unit) {
	delete(s.globals, u.Name)
	if u.Machine == "" {
		return
	}
	if set := s.byMachine[u.Machine]; set != nil {
		delete(set, u.Name)
		if len(set) == 0 {
			delete(s.byMachine, u.Machine)
		}
	}
}

func (s *State) putUnit(u *Unit) {
	if old, ok := s.units[u.Name]; ok {
		s.unindex(old)
	}
	s.units[u.Name] = u
	if u.req.Global {
		s.globals[u.Name] = u
	}
	if u.Machine != "" {
		set := s.byMachine[u.Machine]
		if set == nil {
			set = map[string]*Unit{}
			s.byMachine[u.Machine] = set
		}
		set[u.Name] = u
	}
}

// Index is the log index of the last applied command.
func (s *State) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// Changed returns a channel closed at the next Apply.
func (s *State) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// Unit returns one unit (immutable) or nil.
func (s *State) Unit(name string) *Unit {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.units[name]
}

// Units returns all units sorted by name.
func (s *State) Units() []*Unit {
	s.mu.RLock()
	out := make([]*Unit, 0, len(s.units))
	for _, u := range s.units {
		out = append(out, u)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Machine returns one machine record (a copy) or nil.
func (s *State) Machine(id string) *Machine {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if m, ok := s.machines[id]; ok {
		cp := *m
		return &cp
	}
	return nil
}

// Machines returns all machine records sorted by ID. Records are shared:
// callers must not modify them.
func (s *State) Machines() []*Machine {
	s.mu.RLock()
	out := make([]*Machine, 0, len(s.machines))
	for _, m := range s.machines {
		out = append(out, m)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ScheduledOn returns the names of the non-global units targeted at
// machine id (any desired state), sorted.
func (s *State) ScheduledOn(id string) []string {
	s.mu.RLock()
	out := make([]string, 0, len(s.byMachine[id]))
	for n := range s.byMachine[id] {
		out = append(out, n)
	}
	s.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Assigned returns what machine id must run: units scheduled on it plus
// global units whose MachineMetadata it matches, excluding inactive ones.
// Sorted by name. The agent runs exactly this set.
func (s *State) Assigned(id string) []*Unit {
	s.mu.RLock()
	var out []*Unit
	for _, u := range s.byMachine[id] {
		if u.Desired != unitfile.Inactive {
			out = append(out, u)
		}
	}
	if m := s.machines[id]; m != nil {
		for _, u := range s.globals {
			if u.Desired != unitfile.Inactive && u.req.MatchesMetadata(m.Metadata) {
				out = append(out, u)
			}
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// snapshot is the serialized form of State.
type snapshot struct {
	Index    uint64     `json:"index"`
	Term     uint64     `json:"term"`
	Units    []*Unit    `json:"units"`
	Machines []*Machine `json:"machines"`
}

// Snapshot writes the whole state (for raft's FSMSnapshot.Persist).
func (s *State) Snapshot(w io.Writer) error {
	s.mu.RLock()
	snap := snapshot{Index: s.index, Term: s.term}
	for _, n := range sortedKeys(s.units) {
		snap.Units = append(snap.Units, s.units[n])
	}
	for _, id := range sortedKeys(s.machines) {
		snap.Machines = append(snap.Machines, s.machines[id])
	}
	s.mu.RUnlock()
	return json.NewEncoder(w).Encode(&snap)
}

// Restore replaces the state with a snapshot written by Snapshot.
func (s *State) Restore(r io.Reader) error {
	var snap snapshot
	if err := json.NewDecoder(r).Decode(&snap); err != nil {
		return fmt.Errorf("schedule: bad snapshot: %v", err)
	}
	fresh := NewState()
	fresh.index, fresh.term = snap.Index, snap.Term
	for _, su := range snap.Units {
		req, err := unitfile.ParseRequirements(su.Name, su.Options)
		if err != nil {
			return fmt.Errorf("schedule: snapshot unit %s: %v", su.Name, err)
		}
		su.req = req
		fresh.putUnit(su)
	}
	for _, m := range snap.Machines {
		fresh.machines[m.ID] = m
	}
	s.mu.Lock()
	s.index, s.term = fresh.index, fresh.term
	s.units, s.machines, s.byMachine, s.globals = fresh.units, fresh.machines, fresh.byMachine, fresh.globals
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}
