package update

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/pith-os/pith/rebootlock"
)

// memKV is the in-memory KV the agent's tests lock and check health with.
type memKV = rebootlock.MemKV

func newMemKV() *memKV { return rebootlock.NewMemKV() }

// testLog is a logger writing to the test's log.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
