package update

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/rebootlock"
)

func TestUnitsStarted(t *testing.T) {
	tests := []struct {
		name  string
		units []UnitState
		err   string // substring; "" = healthy
	}{
		{"no units", nil, ""},
		{"all active", []UnitState{{"a.service", "launched", "active", "running"}, {"b.service", "launched", "reloading", "reload"}}, ""},
		{"loaded and inactive units do not count", []UnitState{{"a.service", "loaded", "inactive", "dead"}, {"b.service", "inactive", "", ""}}, ""},
		{"failed", []UnitState{{"a.service", "launched", "active", "running"}, {"web.service", "launched", "failed", "failed"}}, "scheduled units failed: web.service (failed/failed)"},
		{"crash loop", []UnitState{{"web.service", "launched", "activating", "auto-restart"}}, "scheduled units failed: web.service (activating/auto-restart)"},
		{"no report yet", []UnitState{{"web.service", "launched", "", ""}}, "not started yet: web.service (no report yet)"},
		{"still starting", []UnitState{{"web.service", "launched", "activating", "start"}}, "not started yet: web.service (activating)"},
		{"failed wins over waiting", []UnitState{{"a.service", "launched", "", ""}, {"b.service", "launched", "failed", "failed"}}, "failed: b.service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := unitsStarted(tt.units)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want %q", err, tt.err)
			}
		})
	}
}

// scriptedUnits answers MachineUnits from a list of answers, one per call,
// repeating the last.
type scriptedUnits struct {
	mu      sync.Mutex
	answers [][]UnitState
	calls   int
}

func (s *scriptedUnits) MachineUnits(context.Context) ([]UnitState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := min(s.calls, len(s.answers)-1)
	s.calls++
	if s.answers[i] == nil {
		return nil, errors.New("leader unknown")
	}
	return s.answers[i], nil
}

type downKV struct{ rebootlock.KV }

func (downKV) Get(context.Context, string) (string, uint64, error) {
	return "", 0, errors.New("no leader")
}

// TestHealthCheck: healthy only once the KV answers and the units run; the
// reasons for waiting are reported; a context end stops the wait.
func TestHealthCheck(t *testing.T) {
	running := []UnitState{{"web.service", "launched", "active", "running"}}
	starting := []UnitState{{"web.service", "launched", "activating", "start"}}
	failed := []UnitState{{"web.service", "launched", "failed", "failed"}}

	units := &scriptedUnits{answers: [][]UnitState{nil, starting, running}}
	var reports []string
	h := HealthCheck(newMemKV(), units, time.Millisecond, func(s string) { reports = append(reports, s) })
	if err := h(context.Background()); err != nil {
		t.Fatal(err)
	}
	if units.calls != 3 || len(reports) != 3 || !strings.Contains(reports[0], "leader unknown") ||
		!strings.Contains(reports[1], "not started yet: web.service") || reports[2] != "" {
		t.Fatalf("calls %d, reports %q", units.calls, reports)
	}

	for _, tt := range []struct {
		name  string
		kv    rebootlock.KV
		units ScheduledUnits
		want  string
	}{
		{"KV without leader", downKV{}, nil, "KV quorum read: no leader"},
		{"a unit failed", newMemKV(), &scriptedUnits{answers: [][]UnitState{failed}}, "scheduled units failed: web.service"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var last string
			n := 0
			h := HealthCheck(tt.kv, tt.units, time.Millisecond, func(s string) {
				last = s
				if n++; n == 5 {
					cancel()
				}
			})
			err := h(ctx)
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(last, tt.want) {
				t.Fatalf("error %v, last report %q; want canceled, %q", err, last, tt.want)
			}
		})
	}
	// No cluster at all: healthy at once.
	if err := HealthCheck(nil, nil, time.Hour, nil)(context.Background()); err != nil {
		t.Fatal(err)
	}
}
