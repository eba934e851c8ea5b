package update

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"
)

// grubSlots models what survives a power cut of the boot state and what
// GRUB does with it: grub.cfg boots next_entry once (clearing it), else
// saved_entry; Invalidate drops a pending trial of the slot.
type grubSlots struct {
	*fakeSlots
	saved, next string
}

func newGrubSlots(t *testing.T) *grubSlots {
	return &grubSlots{fakeSlots: newFakeSlots(t, "a"), saved: "a"}
}

func (g *grubSlots) Invalidate(s string) error {
	g.record("invalidate " + s)
	if g.next == s {
		g.next = ""
	}
	return nil
}
func (g *grubSlots) SetTrial(s string) error { g.record("trial " + s); g.next = s; return nil }
func (g *grubSlots) MarkGood(s string) error {
	g.record("good " + s)
	g.saved, g.next = s, ""
	return nil
}

// boot is a power cut or reboot: GRUB picks the slot.
func (g *grubSlots) boot() {
	g.running = g.saved
	if g.next != "" {
		g.running, g.next = g.next, ""
	}
}

var errCut = errors.New("power cut")

// machine runs one node through boots: each boot makes a new agent on the
// same state directory, runs AfterBoot and one check; a cut (at point, the
// first time it is reached) or a reboot starts the next boot.
type machine struct {
	t       *testing.T
	cs      *channelServer
	g       *grubSlots
	rb      *fakeReboot
	kv      *memKV
	state   string
	point   string
	cuts    int
	healthy func(context.Context) error
	agent   *Agent
}

// versionOf is the release each slot holds: b only ever gets 1.1.0.
var versionOf = map[string]string{"a": "1.0.0", "b": "1.1.0"}

func (m *machine) newAgent() {
	m.agent = m.cs.agent(m.t, m.state, "m1", versionOf[m.g.running], m.g, m.rb, m.kv, StrategyEtcdLock)
	m.agent.cut = func(p string) error {
		if p == m.point && m.cuts == 0 {
			m.cuts++
			return errCut
		}
		return nil
	}
	if m.healthy != nil {
		m.agent.Healthy = m.healthy
	}
}

// run boots until a boot ends with nothing left to do; it returns the
// number of boots.
func (m *machine) run(ctx context.Context) int {
	m.t.Helper()
	m.newAgent()
	for boots := 1; boots < 10; boots++ {
		reboots := m.rb.count()
		err := m.agent.AfterBoot(ctx)
		if err == nil && m.rb.count() == reboots {
			err = m.agent.CheckOnce(ctx)
		}
		if err != nil && !errors.Is(err, errCut) {
			m.t.Fatalf("boot %d on slot %s: %v", boots, m.g.running, err)
		}
		if err == nil && m.rb.count() == reboots {
			return boots
		}
		m.g.boot()
		m.newAgent()
	}
	m.t.Fatalf("no stable state after 10 boots: %v", m.g.events())
	return 0
}

func (m *machine) history() []string {
	var kinds []string
	for _, e := range m.agent.Status().History {
		kinds = append(kinds, e.Version+" "+e.Kind)
	}
	return kinds
}

func (m *machine) lockHolders(ctx context.Context) []string {
	st, err := (&rebootlock.Semaphore{KV: m.kv}).Status(ctx)
	if err != nil {
		m.t.Fatal(err)
	}
	return st.Holders
}

// TestUpdateSurvivesCuts cuts power at every point where the update writes
// state (state.json, grubenv, GPT); the machine must end on the new slot,
// marked good, with the version not taken for a failed one and the reboot
// lock released.
func TestUpdateSurvivesCuts(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		point string
		boots int // boots until stable: 2 without a cut
	}{
		{"", 2},
		{"written", 3},       // slot written, no record: written again
		{"pending-saved", 3}, // record saved, trial not armed: armed again
		{"trial-armed", 2},   // armed, record says written: the trial boots
		{"before-reboot", 2}, // lock taken, about to reboot
		{"healthy", 4},       // healthy, not marked good: GRUB goes back, tried again
		{"marked-good", 3},   // marked good, record not cleared: marked again
		{"lock-released", 3}, // released, lock_held still saved: released again
	} {
		t.Run(cmpOr(tc.point, "no cut"), func(t *testing.T) {
			cs := newChannelServer(t)
			cs.publish(t, "1.1.0", 10)
			m := &machine{t: t, cs: cs, g: newGrubSlots(t), rb: &fakeReboot{}, kv: newMemKV(), state: t.TempDir(), point: tc.point}
			boots := m.run(ctx)
			if tc.point != "" && m.cuts != 1 {
				t.Fatalf("cut point %q never reached", tc.point)
			}
			if m.g.running != "b" || m.g.saved != "b" {
				t.Fatalf("running %s, saved_entry %s; want the new slot b, marked good (slot ops %v)", m.g.running, m.g.saved, m.g.events())
			}
			st := m.agent.Status()
			h := m.history()
			if st.Pending != nil || h[len(h)-1] != "1.1.0 updated" || slices.Contains(h, "1.1.0 rollback") {
				t.Fatalf("pending %+v, history %v", st.Pending, h)
			}
			if len(m.agent.st.Bad) != 0 {
				t.Fatalf("versions taken for failed: %v", m.agent.st.Bad)
			}
			if hs := m.lockHolders(ctx); len(hs) != 0 {
				t.Fatalf("reboot lock still held by %v", hs)
			}
			if boots != tc.boots {
				t.Errorf("%d boots, want %d (slot ops %v)", boots, tc.boots, m.g.events())
			}
		})
	}
}

// TestUpdateNeverHealthyRollsBack: a node whose units never become healthy
// on the new release goes back to the previous slot after VerifyTimeout,
// says why, marks the version bad and releases the reboot lock, with or
// without a cut on the way back.
func TestUpdateNeverHealthyRollsBack(t *testing.T) {
	ctx := context.Background()
	// Not healthy until its deadline, as HealthCheck reports it.
	unhealthy := func(ctx context.Context) error {
		<-ctx.Done()
		return fmt.Errorf("%w (last: scheduled units failed: web.service (failed/failed))", ctx.Err())
	}
	for _, tc := range []struct {
		point string
		boots int // update, trial, back; one more after a cut on the old slot
	}{
		{"", 3},
		{"rollback-invalidated", 3}, // invalidated, no reboot yet: invalidated again
		{"rollback-recorded", 4},    // rollback saved, lock not released: released next boot
		{"lock-released", 4},        // released, lock_held still saved: released again
	} {
		point := tc.point
		t.Run(cmpOr(point, "no cut"), func(t *testing.T) {
			cs := newChannelServer(t)
			cs.publish(t, "1.1.0", 10)
			m := &machine{t: t, cs: cs, g: newGrubSlots(t), rb: &fakeReboot{}, kv: newMemKV(), state: t.TempDir(), point: point}
			m.healthy = func(ctx context.Context) error {
				if m.g.running == "b" {
					return unhealthy(ctx)
				}
				return nil
			}
			// newAgent sets the configured timeout through Config.
			cs.verifyTimeout = 1
			if boots := m.run(ctx); boots != tc.boots {
				t.Errorf("%d boots, want %d (slot ops %v)", boots, tc.boots, m.g.events())
			}
			if point != "" && m.cuts != 1 {
				t.Fatalf("cut point %q never reached", point)
			}
			if m.g.running != "a" || m.g.saved != "a" {
				t.Fatalf("running %s, saved %s; want back on a", m.g.running, m.g.saved)
			}
			h := m.agent.Status().History
			last := h[len(h)-1]
			if last.Kind != "rollback" || last.Version != "1.1.0" || !strings.Contains(last.Detail, "not healthy within") || !strings.Contains(last.Detail, "web.service (failed/failed)") {
				t.Fatalf("rollback not reported with its reason: %+v", last)
			}
			if !slices.Contains(m.agent.st.Bad, "1.1.0") {
				t.Fatalf("1.1.0 not marked bad: %v", m.agent.st.Bad)
			}
			if hs := m.lockHolders(ctx); len(hs) != 0 {
				t.Fatalf("reboot lock still held by %v after the rollback", hs)
			}
			// The rest of the cluster carries on: another machine gets the lock.
			if err := (&rebootlock.Semaphore{KV: m.kv}).Lock(ctx, "m2"); err != nil {
				t.Fatalf("m2 cannot take the lock after the rollback: %v", err)
			}
			if ev := m.g.events(); !slices.Contains(ev, "invalidate b") || slices.Contains(ev, "good b") {
				t.Fatalf("slot ops %v: b must be invalidated, never marked good", ev)
			}
		})
	}
}

// A pithd restart (same boot) is not a reboot: a trial armed and waiting
// for its reboot is not taken for a failed one.
func TestAfterBootSameBootIsNoRollback(t *testing.T) {
	ctx := context.Background()
	cs := newChannelServer(t)
	cs.publish(t, "1.1.0", 10)
	g := newGrubSlots(t)
	state := t.TempDir()
	cfg := func() Config {
		return Config{Server: cs.url, Channel: "stable", Strategy: StrategyOff, MachineID: "m1", Running: "1.0.0",
			Platform: "linux/amd64", Keys: cs.keyring(), StateDir: state, BootID: "one-boot"}
	}
	a, err := New(cfg(), g, &fakeReboot{}, nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.CheckOnce(ctx); err != nil {
		t.Fatal(err)
	}
	a, err = New(cfg(), g, &fakeReboot{}, nil, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AfterBoot(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(); st.Pending == nil || st.Pending.Stage != node.StageArmed || g.next != "b" || len(a.st.Bad) != 0 {
		t.Fatalf("after a restart: pending %+v, next_entry %q, bad %v", st.Pending, g.next, a.st.Bad)
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
