package update

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/node"
)

// TestVerifyTimeoutCountsFromTrialStart: pithd restarting on the trial slot
// does not start the verify timeout over. It counts from the trial's first
// start, which state.json keeps; once it is spent the next start rolls back
// at once. A trial armed again (a retry) starts afresh.
func TestVerifyTimeoutCountsFromTrialStart(t *testing.T) {
	ctx := context.Background()
	cs := newChannelServer(t)
	cs.publish(t, "1.1.0", 10)
	cs.verifyTimeout = 10 * time.Minute
	g := newGrubSlots(t)
	rb := &fakeReboot{}
	state := t.TempDir()
	if err := cs.agent(t, state, "m1", "1.0.0", g, rb, nil, StrategyReboot).CheckOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if rb.count() != 1 || g.next != "b" {
		t.Fatalf("update not applied and rebooted for: reboots %d, next %q", rb.count(), g.next)
	}
	g.boot()
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

	// start is one pithd start on the trial slot at clock; restart stops
	// it (systemd restarting pithd) while it waits for health. It returns
	// the time the health check was given.
	start := func(clock time.Time, restart bool) (*Agent, time.Duration, error) {
		a := cs.agent(t, state, "m1", "1.1.0", g, rb, nil, StrategyReboot)
		a.now = func() time.Time { return clock }
		var given time.Duration
		actx, cancel := context.WithCancel(ctx)
		defer cancel()
		a.Healthy = func(vctx context.Context) error {
			dl, _ := vctx.Deadline()
			given = time.Until(dl)
			if restart {
				cancel()
				return actx.Err()
			}
			<-vctx.Done()
			return fmt.Errorf("%w (last: scheduled units failed: web.service (failed/failed))", vctx.Err())
		}
		return a, given, a.AfterBoot(actx)
	}
	for _, tc := range []struct {
		after    time.Duration
		min, max time.Duration
	}{
		{0, 9 * time.Minute, 10 * time.Minute},
		{7 * time.Minute, 2 * time.Minute, 3 * time.Minute},
	} {
		a, given, err := start(t0.Add(tc.after), true)
		if err == nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("restart %s into the trial: %v", tc.after, err)
		}
		if given <= tc.min || given > tc.max {
			t.Errorf("pithd started %s into the trial: health check given %s, want (%s, %s]", tc.after, given, tc.min, tc.max)
		}
		if p := a.Status().Pending; p == nil || !p.TrialStart.Equal(t0) || p.Stage != node.StageArmed {
			t.Fatalf("pending after a restart %s into the trial: %+v, want trial start %s", tc.after, p, t0)
		}
	}
	// 11 minutes in: the 10 are spent; no new 10 minutes, the way back.
	reboots := rb.count()
	a, given, err := start(t0.Add(11*time.Minute), false)
	if err != nil {
		t.Fatal(err)
	}
	if given > 0 {
		t.Errorf("health check given %s after the timeout was spent", given)
	}
	p := a.Status().Pending
	if rb.count() != reboots+1 || p == nil || p.Stage != node.StageUnhealthy || !strings.Contains(p.Reason, "not healthy within 10m0s: scheduled units failed: web.service") {
		t.Fatalf("no rollback once the timeout was spent: reboots %d, pending %+v", rb.count()-reboots, p)
	}
	if ev := g.events(); !slices.Contains(ev, "invalidate b") {
		t.Fatalf("slot b not invalidated for the way back: %v", ev)
	}
}

// A trial armed again after a cut (StageWritten on the old slot) gets the
// whole timeout, not what an earlier trial of the same release left.
func TestTrialStartClearedWhenArmedAgain(t *testing.T) {
	cs := newChannelServer(t)
	g := newGrubSlots(t)
	a := cs.agent(t, t.TempDir(), "m1", "1.0.0", g, &fakeReboot{}, nil, StrategyReboot)
	a.st.Pending = &node.UpdatePending{Version: "1.1.0", Slot: "b", From: "1.0.0", Stage: node.StageWritten, TrialStart: time.Now().Add(-time.Hour)}
	if err := a.arm("b"); err != nil {
		t.Fatal(err)
	}
	if p := a.Status().Pending; !p.TrialStart.IsZero() || p.Stage != node.StageArmed {
		t.Fatalf("armed again: %+v", p)
	}
}
