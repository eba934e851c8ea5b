package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/channels"
)

// TestRolloutCommands drives pith release rollout through a rollout's life
// and checks what it stores for the channel server, and its refusals.
func TestRolloutCommands(t *testing.T) {
	st := t.TempDir()
	rollout := func(args ...string) (string, error) {
		return runPith(t, append([]string{"release", "rollout", "--state", st, "--channel", "stable"}, args...)...)
	}
	read := func() *channels.Rollout {
		t.Helper()
		r, err := channels.ReadRollout(st, "stable")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tc := range []struct {
		args  []string
		fails string // "" = must succeed
	}{
		{[]string{"pause"}, "no rollout to pause"},
		{[]string{"--version", "1.2.0", "--percent", "10", "--over", "2h", "--halt-first", "3", "--halt-max-first", "0", "--halt-max-percent", "10"}, ""},
		{[]string{"--version", "1.2.0", "--percent", "101", "--over", "0s"}, "percentage"},
		{[]string{"--version", "x", "--percent", "5", "--over", "0s"}, "version"},
		{[]string{"pause"}, ""},
		{[]string{"pause"}, "already paused"},
		{[]string{"resume"}, ""},
		{[]string{"resume"}, "not paused or halted"},
		{[]string{"pin", "--group", "db", "--version", "1.1.0", "--unpin=false"}, ""},
		{[]string{"pin", "--group", "db", "--version", "one", "--unpin=false"}, "pin db"},
		{[]string{"barrier", "--version", "1.1.5"}, ""},
		{[]string{"status"}, ""},
	} {
		out, err := rollout(tc.args...)
		switch {
		case tc.fails == "" && err != nil:
			t.Fatalf("%v: %v\n%s", tc.args, err, out)
		case tc.fails != "" && (err == nil || !strings.Contains(err.Error(), tc.fails)):
			t.Fatalf("%v: %v, want an error about %q", tc.args, err, tc.fails)
		}
	}
	r := read()
	if r.Version != "1.2.0" || r.Percent != 10 || r.Over != 2*time.Hour || r.State != channels.RolloutActive ||
		r.Pins["db"] != "1.1.0" || r.Barrier != "1.1.5" || r.Halt != (channels.HaltRule{First: 3, MaxFirst: 0, MaxPercent: 10}) {
		t.Fatalf("stored rollout %+v", r)
	}
	// The ramp keeps going from where it was after pause and resume: a
	// raise continues from the current share, never below it.
	if _, err := rollout("--version", "1.2.0", "--percent", "50", "--over", "1h"); err != nil {
		t.Fatal(err)
	}
	if r2 := read(); r2.From < 0 || r2.From > 10 || r2.Percent != 50 || r2.Generation <= r.Generation {
		t.Fatalf("raised rollout %+v", r2)
	}
	out, err := rollout("status")
	if err != nil || !strings.Contains(out, "rollout of 1.2.0 active") || !strings.Contains(out, "pin: group db stays on 1.1.0") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}
