package update

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"
)

// rolledBack is a machine back on slot a after its trial of 1.1.0 on b
// failed, still holding the reboot lock (as rollBack leaves it): state.json
// says so, the KV's semaphore names m1.
func rolledBack(t *testing.T, kv rebootlock.KV) (state string) {
	t.Helper()
	state = t.TempDir()
	b, _ := json.Marshal(persisted{
		Pending:  &node.UpdatePending{Version: "1.1.0", Slot: "b", From: "1.0.0", Stage: node.StageUnhealthy, Boot: "an-earlier-boot", Reason: "was not healthy within 10m0s"},
		LockHeld: true,
	})
	if err := os.WriteFile(filepath.Join(state, "state.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (&rebootlock.Semaphore{KV: kv}).Lock(context.Background(), "m1"); err != nil {
		t.Fatal(err)
	}
	return state
}

// TestRollbackReleasesLockPromptly: a node back from a failed trial
// releases the reboot lock in AfterBoot even while its KV has no leader
// yet, retrying after short pauses (never the 30 s LockRetry), exactly
// once for its own id: a slot another machine holds is never given back.
func TestRollbackReleasesLockPromptly(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name     string
		noLeader int  // KV reads that fail before one succeeds
		otherHas bool // the lock was released by an earlier boot and m2 took it
		cancel   bool // pithd stops while the KV still has no leader
		pauses   []time.Duration
	}{
		{name: "leader at once"},
		{name: "no leader for 3 tries", noLeader: 3, pauses: []time.Duration{s / 4, s / 2, s}},
		{name: "no leader for 8 tries", noLeader: 8, pauses: []time.Duration{s / 4, s / 2, s, 2 * s, 4 * s, 4 * s, 4 * s, 4 * s}},
		{name: "released before a cut, now m2's", otherHas: true},
		{name: "stopped before a leader", noLeader: 1 << 30, cancel: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			mem := newMemKV()
			kv := &flakyKV{memKV: mem}
			state := rolledBack(t, mem)
			sem := &rebootlock.Semaphore{KV: mem}
			if tc.otherHas {
				if err := sem.Unlock(ctx, "m1"); err != nil {
					t.Fatal(err)
				}
				if err := sem.Lock(ctx, "m2"); err != nil {
					t.Fatal(err)
				}
			}
			kv.n = tc.noLeader
			cs := newChannelServer(t)
			a := cs.agent(t, state, "m1", "1.0.0", newFakeSlots(t, "a"), &fakeReboot{}, kv, StrategyEtcdLock)
			a.cfg.LockRetry = 30 * time.Second // pithd's default
			var pauses []time.Duration
			a.after = func(d time.Duration) <-chan time.Time {
				pauses = append(pauses, d)
				if tc.cancel && len(pauses) == 5 {
					cancel()
				}
				c := make(chan time.Time, 1)
				c <- time.Time{}
				return c
			}
			err := a.AfterBoot(ctx)
			h := a.Status().History
			if len(h) == 0 || h[len(h)-1].Kind != "rollback" {
				t.Fatalf("rollback not recorded: %+v", h)
			}
			st, serr := sem.Status(context.Background())
			if serr != nil {
				t.Fatal(serr)
			}
			if tc.cancel {
				// Not released, and still known to be held: the next
				// start of pithd releases it.
				if err == nil || !a.st.LockHeld || !slices.Equal(st.Holders, []string{"m1"}) {
					t.Fatalf("stopped before a leader: err %v, lock_held %v, holders %v", err, a.st.LockHeld, st.Holders)
				}
				kv.n = 0
				a2 := cs.agent(t, state, "m1", "1.0.0", newFakeSlots(t, "a"), &fakeReboot{}, kv, StrategyEtcdLock)
				if err := a2.AfterBoot(context.Background()); err != nil {
					t.Fatal(err)
				}
				if st, _ := sem.Status(context.Background()); len(st.Holders) != 0 || a2.st.LockHeld {
					t.Fatalf("next start: holders %v, lock_held %v", st.Holders, a2.st.LockHeld)
				}
				return
			}
			if err != nil {
				t.Fatalf("AfterBoot: %v", err)
			}
			want := []string{}
			if tc.otherHas {
				want = []string{"m2"}
			}
			if !slices.Equal(st.Holders, want) || st.Semaphore != 1-len(want) {
				t.Fatalf("semaphore %+v, want holders %v", st, want)
			}
			if a.st.LockHeld {
				t.Fatal("lock_held still saved after the release")
			}
			if !slices.Equal(pauses, tc.pauses) {
				t.Fatalf("pauses between attempts %v, want %v", pauses, tc.pauses)
			}
		})
	}
}
