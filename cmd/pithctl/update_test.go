package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pith-os/pith/agent/kv"
	"github.com/pith-os/pith/agent/update"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"
)

func runCtl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(args)
	err := rootCmd.ExecuteContext(context.Background())
	return out.String(), err
}

// TestLockCommands runs pithctl lock against Pith's KV over its etcd v2 API,
// checking locksmithctl's output format.
func TestLockCommands(t *testing.T) {
	st := kv.NewStore(kv.Options{})
	ts := httptest.NewServer(kv.NewServer(st, kv.NewLocal(st), kv.Limits{}))
	defer ts.Close()
	ep := "--endpoints=" + ts.URL
	out, err := runCtl(t, "lock", "status", ep)
	if err != nil || out != "Available: 1\nMax: 1\n" {
		t.Fatalf("status: %q %v", out, err)
	}
	ekv, _ := rebootlock.NewEtcdKV([]string{ts.URL})
	if err := (&rebootlock.Semaphore{KV: ekv}).Lock(context.Background(), "69d27b356a94476da859461d3a3bc6fd"); err != nil {
		t.Fatal(err)
	}
	if out, _ := runCtl(t, "lock", "status", ep); out != "Available: 0\nMax: 1\n\nMACHINE ID\n69d27b356a94476da859461d3a3bc6fd\n" {
		t.Fatalf("status with a holder: %q", out)
	}
	if out, err := runCtl(t, "lock", "set-max", "4", ep); err != nil || out != "Old: 1\nNew: 4\n" {
		t.Fatalf("set-max: %q %v", out, err)
	}
	if _, err := runCtl(t, "lock", "unlock", "nobody", ep); err == nil || !strings.Contains(err.Error(), "does not hold") {
		t.Fatalf("unlock of a non-holder: %v", err)
	}
	if out, err := runCtl(t, "lock", "unlock", "69d27b356a94476da859461d3a3bc6fd", ep); err != nil || !strings.Contains(out, "Unlocked") {
		t.Fatalf("unlock: %q %v", out, err)
	}
	if out, _ := runCtl(t, "lock", "status", ep); out != "Available: 4\nMax: 4\n" {
		t.Fatalf("final status: %q", out)
	}
	if _, err := runCtl(t, "lock", "set-max", "-2", ep); err == nil {
		t.Fatal("negative max accepted")
	}
}

func TestUpdateCommands(t *testing.T) {
	a, err := update.New(update.Config{MachineID: "m1", Running: "1.0.0", Channel: "stable", StateDir: t.TempDir()}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.RegisterHTTP(mux)
	ts := httptest.NewServer(mux)
	defer ts.Close()
	out, err := runCtl(t, "update", "status", "--endpoint", ts.URL)
	if err != nil || !strings.Contains(out, "Phase:     idle\nRunning:   1.0.0\nChannel:   stable\nKeys:      none (every update is refused)\n") {
		t.Fatalf("status: %q %v", out, err)
	}
	if out, err := runCtl(t, "update", "check", "--endpoint", ts.URL); err != nil || !strings.Contains(out, "Check requested") {
		t.Fatalf("check: %q %v", out, err)
	}
	if out, err := runCtl(t, "update", "history", "--endpoint", ts.URL); err != nil || out != "TIME  VERSION  EVENT  DETAIL\n" {
		t.Fatalf("history: %q %v", out, err)
	}
	empty := httptest.NewServer(http.NotFoundHandler())
	defer empty.Close()
	if _, err := runCtl(t, "update", "status", "--endpoint", empty.URL); err == nil || !strings.Contains(err.Error(), "--update-server") {
		t.Fatalf("node without an agent: %v", err)
	}
}

// TestUpdateStatusHeldBack: pithctl update status says why the channel's
// rollout holds the node back, and says nothing of it when it does not.
func TestUpdateStatusHeldBack(t *testing.T) {
	for _, tc := range []struct {
		heldBack, want string
	}{
		{"rollout of 1.1.0 at 20.0%; this machine's place is 57.3%", "Available: 1.1.0\nHeld back: rollout of 1.1.0 at 20.0%; this machine's place is 57.3%\n"},
		{"rollout of 1.1.0 paused at 20.0%", "Held back: rollout of 1.1.0 paused at 20.0%\n"},
		{"group db is pinned to 1.0.0", "Held back: group db is pinned to 1.0.0\n"},
		{"rollout of 1.1.0 halted: 1 of the first 1 machines that installed it failed", "Held back: rollout of 1.1.0 halted: 1 of the first 1"},
		{"", ""},
	} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(node.UpdateStatus{Phase: node.PhaseIdle, Running: "1.0.0", Channel: "stable", Available: "1.1.0", HeldBack: tc.heldBack})
		}))
		out, err := runCtl(t, "update", "status", "--endpoint", ts.URL)
		ts.Close()
		if err != nil || !strings.Contains(out, tc.want) || (tc.heldBack == "") == strings.Contains(out, "Held back:") {
			t.Errorf("held back %q: status %q %v, want %q", tc.heldBack, out, err, tc.want)
		}
	}
}
