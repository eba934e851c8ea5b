package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/internal/pithdtest"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"
)

// TestRollbackReleasesLockWithoutLeader: a machine comes back on its old
// slot after a failed trial, holding the reboot lock, while its KV has no
// leader (here: its two peers are still down). pithd records the rollback
// at once and keeps trying to release the lock; once the peers are back
// the lock is free, released by AfterBoot's own short retries, not by
// pithd's 30 s retry of a failed AfterBoot.
func TestRollbackReleasesLockWithoutLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pithd processes")
	}
	dir := t.TempDir()
	bin := pithdtest.Binary(t)
	pub, _, _ := ed25519.GenerateKey(nil)
	keys := updKeys(t, dir, pub)
	// No release on the channel: this test is about the last update.
	ts := httptest.NewServer(http.NotFoundHandler())
	defer ts.Close()
	ms := updMembers(t, dir, 3, "rollback-test")
	for _, m := range ms {
		m.start(t, bin, ts.URL, keys, "1.0.0")
	}
	ctx := context.Background()
	kv, err := rebootlock.NewEtcdKV([]string{ms[0].client, ms[1].client, ms[2].client})
	if err != nil {
		t.Fatal(err)
	}
	sem := &rebootlock.Semaphore{KV: kv}
	back := ms[0]
	pithdtest.Poll(t, back.name+" holding the reboot lock", func() (bool, string) {
		if err := sem.Lock(ctx, back.id); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	for _, m := range ms {
		m.proc.Kill()
	}
	// What a trial of 1.1.0 on slot b that went back to a leaves behind.
	state, _ := json.Marshal(map[string]any{
		"pending":   node.UpdatePending{Version: "1.1.0", Slot: "b", From: "1.0.0", Stage: node.StageArmed, Boot: "an-earlier-boot"},
		"lock_held": true,
	})
	if err := os.WriteFile(filepath.Join(back.dir, "data", "update", "state.json"), state, 0o600); err != nil {
		t.Fatal(err)
	}
	back.start(t, bin, ts.URL, keys, "1.0.0")
	pithdtest.Poll(t, back.name+" recording the rollback with no leader", func() (bool, string) {
		st, err := back.status()
		if err != nil {
			return false, err.Error()
		}
		for _, e := range st.History {
			if e.Kind == "rollback" && e.Version == "1.1.0" {
				return true, ""
			}
		}
		return false, string(st.Phase)
	})
	for _, m := range ms[1:] {
		m.start(t, bin, ts.URL, keys, "1.0.0")
	}
	pithdtest.Poll(t, "the reboot lock free", func() (bool, string) {
		st, err := sem.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		return len(st.Holders) == 0, strings.Join(st.Holders, ",")
	})
	// The KV shows the lock free as soon as the release commits; pithd logs
	// "released" only when its call returns, so wait for the line.
	var log []byte
	pithdtest.Poll(t, back.name+" logging the release", func() (bool, string) {
		var err error
		if log, err = os.ReadFile(back.proc.Log); err != nil {
			return false, err.Error()
		}
		return strings.Contains(string(log), "reboot lock released"), "no \"reboot lock released\" line yet"
	})
	if !strings.Contains(string(log), "releasing the reboot lock, retrying") {
		t.Errorf("%s's log does not show the release retried until it went through", back.name)
	}
	if strings.Contains(string(log), "settling the last update") {
		t.Errorf("%s's AfterBoot failed into pithd's 30 s retry", back.name)
	}
}
