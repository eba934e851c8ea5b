package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
)

// Op names one kind of replicated mutation. Each Command is one raft log
// entry; State.Apply is the deterministic FSM step for it.
type Op string

const (
	// OpCreateUnit adds a unit (or replaces its options when they differ).
	OpCreateUnit Op = "create-unit"
	// OpSetDesired changes a unit's desired state.
	OpSetDesired Op = "set-desired"
	// OpDestroyUnit removes a unit.
	OpDestroyUnit Op = "destroy-unit"
	// OpRegisterMachine adds or updates a machine record (ID, IP, metadata).
	OpRegisterMachine Op = "register-machine"
	// OpRemoveMachine forgets a machine.
	OpRemoveMachine Op = "remove-machine"
	// OpPlace is the engine's batch of placement decisions.
	OpPlace Op = "place"
)

// Command is one replicated mutation. Only the fields its Op needs are set.
type Command struct {
	Op Op `json:"op"`
	// Unit: OpCreateUnit's name, options and desired state.
	Unit *UnitSpec `json:"unit,omitempty"`
	// Name and Desired: OpSetDesired, OpDestroyUnit, OpRemoveMachine (Name).
	Name    string       `json:"name,omitempty"`
	Desired DesiredState `json:"desired,omitempty"`
	// Machine: OpRegisterMachine; Machines registers several at once (the
	// engine batches the records its heartbeats changed).
	Machine  *Machine   `json:"machine,omitempty"`
	Machines []*Machine `json:"machines,omitempty"`
	// Term fences OpPlace: batches from an engine whose leadership term is
	// older than one already applied are dropped whole.
	Term       uint64      `json:"term,omitempty"`
	Placements []Placement `json:"placements,omitempty"`
}

// UnitSpec is what an operator submits.
type UnitSpec struct {
	Name    string       `json:"name"`
	Options []UnitOption `json:"options"`
	Desired DesiredState `json:"desiredState"`
}

// Placement moves one unit From one machine To another ("" = unscheduled).
// It applies only if the unit is still on From, so stale decisions are no-ops.
type Placement struct {
	Unit   string `json:"unit"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Errors Apply returns to the proposer (they are results, not failures of
// replication: every replica computes the same one).
var (
	ErrUnitExists   = errors.New("unit already exists")
	ErrUnitNotFound = errors.New("unit does not exist")
	ErrStaleTerm    = errors.New("placement from an older leadership term")
)

// PlaceResult reports how many placements of a batch took effect.
type PlaceResult struct{ Applied, Skipped int }

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

// EncodeCommand is the log entry payload for cmd.
func EncodeCommand(cmd *Command) ([]byte, error) { return json.Marshal(cmd) }

// DecodeCommand parses a log entry payload.
func DecodeCommand(b []byte) (*Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("schedule: undecodable command: %v", err)
	}
	return &c, nil
}

// ApplyResult is what Apply returns for one log entry: the proposer's
// value (nil, or PlaceResult for OpPlace) and the command's error.
type ApplyResult struct {
	Value any
	Err   error
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
			if u.Desired != Inactive {
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
		d, err := ParseDesiredState(string(cmd.Desired))
		if err != nil {
			return nil, err
		}
		if IsTemplate(old.Name) && d != Inactive {
			return nil, fmt.Errorf("unit %s is a template: start an instance of it instead", old.Name)
		}
		if old.Desired == d {
			return nil, nil
		}
		u := *old
		u.Desired = d
		if d == Inactive {
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
			if !ok || old.Machine != p.From || (p.To != "" && old.Desired == Inactive) {
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
		if u.Desired != Inactive {
			out = append(out, u)
		}
	}
	if m := s.machines[id]; m != nil {
		for _, u := range s.globals {
			if u.Desired != Inactive && u.req.MatchesMetadata(m.Metadata) {
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
		req, err := ParseRequirements(su.Name, su.Options)
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

// Store is the scheduler's view of replication. Propose commits cmd (one
// raft log entry) and returns once it is applied on this node, with Apply's
// result. State is the local replica, readable at any time.
type Store interface {
	Propose(ctx context.Context, cmd *Command) (any, error)
	State() *State
}

// MemStore is a single-node Store: commands go through the same encoding a
// raft log would carry, then straight into Apply.
type MemStore struct {
	mu    sync.Mutex
	st    *State
	index uint64
	// Hook, if set, runs before each command is applied (tests use it to
	// interleave other proposals, e.g. a leader change).
	Hook func(*Command)
}

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore { return &MemStore{st: NewState()} }

// State implements Store.
func (m *MemStore) State() *State { return m.st }

// Propose implements Store.
func (m *MemStore) Propose(ctx context.Context, cmd *Command) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	if m.Hook != nil {
		dec, err := DecodeCommand(b)
		if err != nil {
			return nil, err
		}
		m.Hook(dec)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.index++
	// The same path a raft log entry takes.
	r := m.st.Apply(m.index, b).(ApplyResult)
	return r.Value, r.Err
}

// LogStore is the Store over a replicated log (pithd: the cluster's raft,
// namespace schedule). submit appends one entry on the leader and returns
// the value the FSM's Apply returned for it; st is this node's replica,
// which the FSM feeds.
type LogStore struct {
	st     *State
	submit func(ctx context.Context, entry []byte) (any, error)
}

// NewLogStore wires a State that the log applies to with the function that
// proposes entries.
func NewLogStore(st *State, submit func(ctx context.Context, entry []byte) (any, error)) *LogStore {
	return &LogStore{st: st, submit: submit}
}

// State implements Store.
func (l *LogStore) State() *State { return l.st }

// Propose implements Store.
func (l *LogStore) Propose(ctx context.Context, cmd *Command) (any, error) {
	b, err := EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	res, err := l.submit(ctx, b)
	if err != nil {
		return nil, err
	}
	switch r := res.(type) {
	case ApplyResult:
		return r.Value, r.Err
	case error:
		return nil, r
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("schedule: unexpected apply result %T", res)
}
