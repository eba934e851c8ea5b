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
}

// NewMemKV returns an empty MemKV.
func NewMemKV() *MemKV { return &MemKV{vals: map[string]string{}, mod: map[string]uint64{}} }

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
	m.index++
	m.vals[key], m.mod[key] = value, m.index
	return m.index, nil
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
	m.index++
	m.vals[key], m.mod[key] = value, m.index
	return m.index, nil
}
