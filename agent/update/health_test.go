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
	const settle = 20 * time.Second
	up := func(name string, d time.Duration) UnitState {
		return UnitState{Name: name, Desired: "launched", Active: "active", Sub: "running", ActiveFor: d}
	}
	tests := []struct {
		name  string
		units []UnitState
		err   string // substring; "" = healthy
	}{
		{"no units", nil, ""},
		{"all active long enough", []UnitState{up("a.service", settle), {"b.service", "launched", "reloading", "reload", 0}}, ""},
		{"loaded and inactive units do not count", []UnitState{{"a.service", "loaded", "inactive", "dead", 0}, {"b.service", "inactive", "", "", 0}}, ""},
		{"failed", []UnitState{up("a.service", time.Hour), {"web.service", "launched", "failed", "failed", 0}}, "scheduled units failed: web.service (failed/failed)"},
		{"crash loop", []UnitState{{"web.service", "launched", "activating", "auto-restart", 0}}, "scheduled units failed: web.service (activating/auto-restart)"},
		{"no report yet", []UnitState{{"web.service", "launched", "", "", 0}}, "not started yet: web.service (no report yet)"},
		{"still starting", []UnitState{{"web.service", "launched", "activating", "start", 0}}, "not started yet: web.service (activating)"},
		// /bin/false is active for an instant after its start: not healthy.
		{"just started", []UnitState{up("web.service", 0)}, "not started yet: web.service (active 0s of 20s)"},
		{"settling", []UnitState{up("web.service", settle-time.Second)}, "web.service (active 19s of 20s)"},
		{"failed wins over waiting", []UnitState{{"a.service", "launched", "", "", 0}, {"b.service", "launched", "failed", "failed", 0}}, "failed: b.service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := unitsStarted(tt.units, settle)
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

func TestSettledIn(t *testing.T) {
	const settle = 20 * time.Second
	up := func(d time.Duration) UnitState {
		return UnitState{Name: "u.service", Desired: "launched", Active: "active", Sub: "running", ActiveFor: d}
	}
	tests := []struct {
		name  string
		units []UnitState
		left  time.Duration
		ok    bool
	}{
		{"no units", nil, 0, true},
		{"settled", []UnitState{up(time.Hour)}, 0, true},
		{"youngest decides", []UnitState{up(15 * time.Second), up(3 * time.Second)}, 17 * time.Second, true},
		{"reloading counts as running", []UnitState{up(18 * time.Second), {"r.service", "launched", "reloading", "reload", 0}}, 2 * time.Second, true},
		{"not launched does not count", []UnitState{up(18 * time.Second), {"l.service", "loaded", "inactive", "dead", 0}}, 2 * time.Second, true},
		{"one still starting", []UnitState{up(18 * time.Second), {"s.service", "launched", "activating", "start", 0}}, 0, false},
		{"one failed", []UnitState{up(18 * time.Second), {"f.service", "launched", "failed", "failed", 0}}, 0, false},
		{"no report yet", []UnitState{{"n.service", "launched", "", "", 0}}, 0, false},
	}
	for _, tt := range tests {
		if left, ok := settledIn(tt.units, settle); left != tt.left || ok != tt.ok {
			t.Errorf("%s: settledIn = %s, %v; want %s, %v", tt.name, left, ok, tt.left, tt.ok)
		}
	}
}

// TestHealthCheckWaitsOnlyUntilSettled: units that are up but young are
// checked again as they settle, not a whole retry later.
func TestHealthCheckWaitsOnlyUntilSettled(t *testing.T) {
	const settle = 10 * time.Second
	young := []UnitState{{"web.service", "launched", "active", "running", settle - 50*time.Millisecond}}
	settled := []UnitState{{"web.service", "launched", "active", "running", settle}}
	units := &scriptedUnits{answers: [][]UnitState{young, settled}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := HealthCheck(newMemKV(), units, time.Hour, settle, nil)(ctx); err != nil {
		t.Fatalf("not healthy after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	if took := time.Since(start); took > 5*time.Second || units.calls != 2 {
		t.Fatalf("healthy after %s and %d checks, want 2 checks about 150ms apart", took, units.calls)
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
	const settle = 10 * time.Second
	justUp := []UnitState{{"web.service", "launched", "active", "running", time.Second}}
	running := []UnitState{{"web.service", "launched", "active", "running", settle}}
	starting := []UnitState{{"web.service", "launched", "activating", "start", 0}}
	failed := []UnitState{{"web.service", "launched", "failed", "failed", 0}}

	units := &scriptedUnits{answers: [][]UnitState{nil, starting, justUp, running}}
	var reports []string
	h := HealthCheck(newMemKV(), units, time.Millisecond, settle, func(s string) { reports = append(reports, s) })
	if err := h(context.Background()); err != nil {
		t.Fatal(err)
	}
	if units.calls != 4 || len(reports) != 4 || !strings.Contains(reports[0], "leader unknown") ||
		!strings.Contains(reports[1], "not started yet: web.service (activating)") ||
		!strings.Contains(reports[2], "web.service (active 1s of 10s)") || reports[3] != "" {
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
			h := HealthCheck(tt.kv, tt.units, time.Millisecond, settle, func(s string) {
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
	if err := HealthCheck(nil, nil, time.Hour, 0, nil)(context.Background()); err != nil {
		t.Fatal(err)
	}
}
