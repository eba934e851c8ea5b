// Package poll waits for a condition by checking it again and again: the
// one way Pith's walkthrough and tests wait for a cluster to get somewhere.
// It sets no time limit of its own; the caller's context (or, in tests,
// the test binary's -timeout) bounds the wait, so a loaded machine is
// slower, never wrong.
package poll

import (
	"context"
	"fmt"
	"time"
)

// Until calls check every interval until it reports done, and returns how
// long that took. check also describes the state it saw; report, unless
// nil, gets each description that differs from the one before. Until
// fails only when ctx ends, naming what never happened and the last state.
func Until(ctx context.Context, what string, interval time.Duration, check func() (done bool, state string), report func(state string)) (time.Duration, error) {
	start := time.Now()
	last := ""
	for first := true; ; first = false {
		ok, state := check()
		if ok {
			return time.Since(start), nil
		}
		if report != nil && (first || state != last) {
			report(state)
		}
		last = state
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s never happened (%v); last: %s", what, ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}
