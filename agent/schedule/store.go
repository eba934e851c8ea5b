package schedule

// Store: how the engine and the API reach the state, in memory (tests) or
// through the cluster's log (pithd).

import (
	"context"
	"fmt"
	"sync"
)

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
