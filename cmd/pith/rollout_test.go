package main

import (
	"fmt"
	"os"
	"path/filepath"
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
	r2 := read()
	if r2.From < 0 || r2.From > 10 || r2.Percent != 50 || r2.Generation != r.Generation || !r2.Since.Equal(r.Since) {
		t.Fatalf("raised rollout %+v: the same rollout (generation, failures since) goes on", r2)
	}
	out, err := rollout("status")
	if err != nil || !strings.Contains(out, "rollout of 1.2.0 active") || !strings.Contains(out, "pin: group db stays on 1.1.0") {
		t.Fatalf("status: %v\n%s", err, out)
	}

	// The server halts it (as fleet.json records): a raise is refused, a
	// pin keeps the halt, resume lifts it and counts failures afresh.
	halt := fmt.Sprintf(`{"machines":{},"halts":{"stable":{"version":"1.2.0","generation":%d,"reason":"2 of the first 3 failed","time":%q}}}`,
		r2.Generation, time.Now().Add(-time.Minute).Format(time.RFC3339Nano))
	if err := os.WriteFile(filepath.Join(st, "fleet.json"), []byte(halt), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := rollout("--version", "1.2.0", "--percent", "60", "--over", "0s"); err == nil || !strings.Contains(err.Error(), "halted") {
		t.Fatalf("raising a halted rollout: %v", err)
	}
	if _, err := rollout("pin", "--group", "web", "--version", "1.1.0", "--unpin=false"); err != nil {
		t.Fatal(err)
	}
	if out, _ := rollout("status"); !strings.Contains(out, "halted") || !strings.Contains(out, "2 of the first 3 failed") {
		t.Fatalf("a pin lifted the halt:\n%s", out)
	}
	if _, err := rollout("resume"); err != nil {
		t.Fatal(err)
	}
	if r3 := read(); r3.Generation != r2.Generation+1 || !r3.Since.After(r2.Since) || r3.State != channels.RolloutActive {
		t.Fatalf("resumed rollout %+v", r3)
	}
	if out, _ := rollout("status"); strings.Contains(out, "halted") {
		t.Fatalf("still halted after resume:\n%s", out)
	}
}
