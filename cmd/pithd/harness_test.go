package main

import (
	"testing"

	"github.com/pith-os/pith/internal/pithdtest"
)

// The process tests' harness is internal/pithdtest; these two names stay
// for tests written against the harness this package had.
func schedFreePort(t testing.TB) int { t.Helper(); return pithdtest.FreePort(t) }

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	pithdtest.Poll(t, what, cond)
}
