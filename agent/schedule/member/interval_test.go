package member

import (
	"context"
	"testing"
	"time"

	"github.com/pith-os/pith/agent/schedule"
)

// TestReconcileInterval: fleet's engine_reconcile_interval sets the
// engine's period alone; heartbeats keep TTL/5 (a long engine period must
// not make machines miss their TTL).
func TestReconcileInterval(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		ttl, interval, recon    time.Duration
		wantBeat, wantReconcile time.Duration
	}{
		{"defaults", 0, 0, 0, schedule.DefaultTTL / 5, schedule.DefaultTTL / 5},
		{"engine period only", 10 * time.Second, 0, 30 * time.Second, 2 * time.Second, 30 * time.Second},
		{"heartbeat interval is the engine's default", 10 * time.Second, 500 * time.Millisecond, 0, 500 * time.Millisecond, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := New(Config{State: schedule.NewState(), Propose: func(context.Context, []byte) (any, error) { return nil, nil },
				IsLeader: func() bool { return true }, TTL: tc.ttl, Interval: tc.interval, ReconcileInterval: tc.recon})
			if err != nil {
				t.Fatal(err)
			}
			if svc.cfg.Interval != tc.wantBeat || svc.cfg.ReconcileInterval != tc.wantReconcile {
				t.Errorf("heartbeat every %v, engine every %v; want %v, %v", svc.cfg.Interval, svc.cfg.ReconcileInterval, tc.wantBeat, tc.wantReconcile)
			}
		})
	}
}
