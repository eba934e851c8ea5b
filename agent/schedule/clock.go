package schedule

// Clocks in Pith are func() time.Time (time.Now on a node); FakeClock is
// the one tests and simulations advance by hand.

import (
	"sync"
	"time"
)

// FakeClock is a manually advanced clock for tests and simulations.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewFakeClock starts a fake clock at a fixed instant.
func NewFakeClock() *FakeClock { return &FakeClock{t: time.Unix(1_700_000_000, 0)} }

// Now is the fake time; pass c.Now where a clock (func() time.Time) is
// taken.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
