package rebootlock

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// MemKV is an in-memory KV with etcd v2's index semantics, for tests of
// the semaphore and of what uses it.
type MemKV struct {
	mu    sync.Mutex
	index uint64
	vals  map[string]string
	mod   map[string]uint64
	cas   atomic.Int64 // failed compare-and-swaps: proof of contention
	// changed is closed (and replaced) on every write, waking watchers.
	changed chan struct{}
}

// NewMemKV returns an empty MemKV.
func NewMemKV() *MemKV {
	return &MemKV{vals: map[string]string{}, mod: map[string]uint64{}, changed: make(chan struct{})}
}

// set stores a write at the next index; m.mu is held.
func (m *MemKV) set(key, value string) uint64 {
	m.index++
	m.vals[key], m.mod[key] = value, m.index
	close(m.changed)
	m.changed = make(chan struct{})
	return m.index
}

// Watch implements Watcher (the key's last change only: MemKV keeps no
// history, which is enough for a waiter that read the key at afterIndex).
func (m *MemKV) Watch(ctx context.Context, key string, afterIndex uint64) error {
	for {
		m.mu.Lock()
		mod, ch := m.mod[key], m.changed
		m.mu.Unlock()
		if mod > afterIndex {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Get implements KV.
func (m *MemKV) Get(_ context.Context, key string) (string, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[key]
	if !ok {
		return "", 0, ErrKeyNotFound
	}
	return v, m.mod[key], nil
}

// Create implements KV.
func (m *MemKV) Create(_ context.Context, key, value string) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vals[key]; ok {
		return 0, ErrKeyExists
	}
	return m.set(key, value), nil
}

// CompareAndSwap implements KV; each failed compare is counted.
func (m *MemKV) CompareAndSwap(_ context.Context, key, value string, prev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vals[key]; !ok {
		return 0, ErrKeyNotFound
	}
	if m.mod[key] != prev {
		m.cas.Add(1)
		return 0, fmt.Errorf("%w: [%d != %d]", ErrCompareFailed, prev, m.mod[key])
	}
	return m.set(key, value), nil
}
