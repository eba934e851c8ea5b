package cluster

import (
	"context"
	"sync"
	"sync/atomic"
)

// appliedIndex is the last log index this node's state machines applied,
// with waiters woken as it moves. raft.AppliedIndex is not that: raft
// moves it when it hands entries to the FSM goroutine, before they are
// applied.
type appliedIndex struct {
	index   atomic.Uint64
	mu      sync.Mutex
	waiters map[chan struct{}]uint64
}

func (a *appliedIndex) get() uint64 { return a.index.Load() }

// set records that entries through i are applied (never moves back).
func (a *appliedIndex) set(i uint64) {
	if i <= a.index.Load() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if i <= a.index.Load() {
		return
	}
	a.index.Store(i)
	for ch, want := range a.waiters {
		if want <= i {
			close(ch)
			delete(a.waiters, ch)
		}
	}
}

// wait returns once entries through i are applied, or ctx's error.
func (a *appliedIndex) wait(ctx context.Context, i uint64) error {
	if a.index.Load() >= i {
		return nil
	}
	a.mu.Lock()
	if a.index.Load() >= i {
		a.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if a.waiters == nil {
		a.waiters = map[chan struct{}]uint64{}
	}
	a.waiters[ch] = i
	a.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		delete(a.waiters, ch)
		a.mu.Unlock()
		if a.index.Load() >= i {
			return nil
		}
		return ctx.Err()
	}
}
