package update

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/channels"
)

// TestRebootHooks: a failing pre-reboot hook postpones the reboot and is
// reported; once it succeeds the machine reboots; post-reboot hooks run
// after the new release is healthy, with the version in their environment.
func TestRebootHooks(t *testing.T) {
	cs := newChannelServer(t)
	fs := newFleetServer(t, cs)
	cs.publish(t, "1.0.0", 1)
	cs.publish(t, "1.1.0", 10)
	dir := t.TempDir()
	gate := filepath.Join(dir, "drained")
	post := filepath.Join(dir, "post")
	hooks := Hooks{
		PreReboot:  []string{"echo draining", "test -e " + gate + " || { echo pods still running; exit 3; }"},
		PostReboot: []string{"echo $PITH_UPDATE_HOOK $PITH_UPDATE_VERSION $PITH_UPDATE_RUNNING > " + post + ".tmp && mv " + post + ".tmp " + post},
	}
	n := &testNode{id: "m1", state: t.TempDir(), slots: newFakeSlots(t, "a"), rb: &fakeReboot{}}
	boot := func(running string) {
		n.a = cs.agent(t, n.state, n.id, running, n.slots, n.rb, nil, StrategyReboot)
		var err error
		if n.rep, err = NewReporter(n.a, ""); err != nil {
			t.Fatal(err)
		}
		SetHooks(n.a, hooks, n.rep)
		if err := n.a.AfterBoot(context.Background()); err != nil {
			t.Fatal(err)
		}
		drain(n.rep)
	}
	boot("1.0.0")
	err := n.a.CheckOnce(context.Background())
	drain(n.rep)
	if err == nil || !strings.Contains(err.Error(), "postponed") || !strings.Contains(err.Error(), "pods still running") {
		t.Fatalf("failing pre-reboot hook: %v", err)
	}
	if n.rb.count() != 0 {
		t.Fatal("rebooted although the pre-reboot hook failed")
	}
	if ev := lastEvent(fs, n.id); ev.Event != channels.EventHookFailed || !strings.Contains(ev.Reason, "pods still running") || ev.Version != "1.1.0" {
		t.Fatalf("last report %+v, want hook-failed with the hook's output", ev)
	}
	os.WriteFile(gate, nil, 0o644)
	n.check(t)
	if n.rb.count() != 1 {
		t.Fatal("no reboot once the pre-reboot hook succeeded")
	}
	if _, err := os.Stat(post); err == nil {
		t.Fatal("post-reboot hook ran before the reboot")
	}
	n.slots.running = "b"
	boot("1.1.0")
	var b []byte
	for {
		if b, err = os.ReadFile(post); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := strings.TrimSpace(string(b)); got != "post-reboot 1.1.0 1.1.0" {
		t.Fatalf("post-reboot hook saw %q", got)
	}
}

// TestRollbackRebootIgnoresHooks: a rollback reboots even when the
// pre-reboot hook fails (the hook failure is still reported).
func TestRollbackRebootIgnoresHooks(t *testing.T) {
	cs := newChannelServer(t)
	fs := newFleetServer(t, cs)
	cs.publish(t, "1.0.0", 1)
	a := cs.agent(t, t.TempDir(), "m1", "1.0.0", newFakeSlots(t, "a"), &fakeReboot{}, nil, StrategyReboot)
	rep, err := NewReporter(a, "")
	if err != nil {
		t.Fatal(err)
	}
	SetHooks(a, Hooks{PreReboot: []string{"exit 1"}}, rep)
	if err := a.reboot.Reboot(context.Background(), "rollback: slot b was not healthy"); err != nil {
		t.Fatalf("rollback reboot: %v", err)
	}
	if err := a.reboot.Reboot(context.Background(), "update to 1.1.0"); err == nil {
		t.Fatal("update reboot with a failing hook went ahead")
	}
	drain(rep)
	if ev := lastEvent(fs, "m1"); ev.Event != channels.EventHookFailed {
		t.Fatalf("last report %+v", ev)
	}
}
