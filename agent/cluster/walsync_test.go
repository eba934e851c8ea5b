package cluster

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func entries(from, to uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	return out
}

// TestLogStoreSyncBookkeeping walks a log store through follower appends
// (synced in the call), leader appends (synced in the background), and a
// tail truncation, checking after each step how far the log is known to be
// on disk, and that everything written is there after a reopen.
func TestLogStoreSyncBookkeeping(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	s, err := openLogStore(mkdir(t, dir), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
		// durable is how far the log must be synced right after the step
		// (-1: not checked, a background sync may or may not have run).
		durable int
		// wait: the index waitDurable is then called with; durable must
		// be at least that afterwards.
		wait uint64
	}{
		{"follower append", func() error { return s.sync.storeLogs(s.WAL, entries(1, 3), false) }, 3, 3},
		{"leader append", func() error { return s.sync.storeLogs(s.WAL, entries(4, 6), true) }, -1, 6},
		{"leader appends more", func() error { return s.sync.storeLogs(s.WAL, entries(7, 9), true) }, -1, 9},
		{"tail truncation", func() error { return s.DeleteRange(8, 9) }, 7, 7},
		{"follower append after it", func() error { return s.sync.storeLogs(s.WAL, entries(8, 8), false) }, 8, 8},
		{"leader append, then stop", func() error { return s.sync.storeLogs(s.WAL, entries(9, 10), true) }, -1, 0},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		s.sync.mu.Lock()
		durable, written := s.sync.durable, s.sync.written
		s.sync.mu.Unlock()
		if st.durable >= 0 && durable != uint64(st.durable) {
			t.Errorf("%s: durable through %d, want %d", st.name, durable, st.durable)
		}
		if durable > written {
			t.Errorf("%s: durable %d ahead of written %d", st.name, durable, written)
		}
		if st.wait > 0 {
			if err := s.sync.waitDurable(st.wait, nil); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			s.sync.mu.Lock()
			durable, dirty := s.sync.durable, len(s.sync.dirty)
			s.sync.mu.Unlock()
			if durable < st.wait || dirty != 0 {
				t.Errorf("%s: after waitDurable(%d): durable %d, %d dirty files", st.name, st.wait, durable, dirty)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = openLogStore(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 1 || last != 10 {
		t.Fatalf("after reopen: log %d..%d, want 1..10", first, last)
	}
	// Every entry reads back, including those in the segment the tail
	// truncation sealed (raft-wal before v0.4.2 could not read it again).
	for i := uint64(1); i <= 10; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || l.Index != i || l.Data[0] != byte(i) {
			t.Fatalf("entry %d after reopen: %+v %v", i, l, err)
		}
	}
}

// TestSnapshotWaitsForLog: a snapshot is persisted only after the log it
// covers is synced.
func TestSnapshotWaitsForLog(t *testing.T) {
	synced := false
	f := newFSMWith(NamespaceKV, &journal{})
	f.beforePersist = func() error { synced = true; return nil }
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !synced {
		t.Fatal("snapshot persisted without syncing the log first")
	}
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestProposeWaitsForLeaderSync: on a one-member cluster raft counts an
// entry committed as soon as the leader wrote it (its fsync runs in the
// background), but it is on no disk yet: it must be neither applied
// (visible) nor answered until that fsync.
func TestProposeWaitsForLeaderSync(t *testing.T) {
	addr := freeAddr(t)
	cfg := Config{Name: "m0", DataDir: filepath.Join(t.TempDir(), "m0"), ListenPeer: addr, PeerURLs: []string{"http://" + addr}, Token: "sync",
		HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond}
	cfg.InitialCluster = []InitialMember{{Name: "m0", PeerURLs: cfg.PeerURLs}}
	n, j, err := startJournalNode(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	var release sync.Once
	open := func() { release.Do(func() { close(gate) }) }
	// Stop syncs the log: the gate must be open by then, also on failure.
	defer n.Stop()
	defer open()
	s := n.logs.sync
	s.mu.Lock()
	s.beforeSync = func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
	}
	s.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, _, err := n.Propose(context.Background(), NamespaceKV, []byte("held"))
		done <- err
	}()
	<-entered
	// raft commits the entry and hands it to the FSM; it must go no further.
	idx := n.raft.LastIndex()
	for attempt := 0; n.raft.AppliedIndex() < idx; attempt++ {
		if attempt == 1000 {
			t.Fatalf("raft never committed entry %d", idx)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for attempt := 0; attempt < 50; attempt++ {
		if got := j.all(); len(got) > 0 && got[len(got)-1] == "held" {
			t.Fatal("the entry was applied while the leader's fsync was held")
		}
		select {
		case err := <-done:
			t.Fatalf("Propose answered (%v) while the leader's fsync was held", err)
		default:
		}
		time.Sleep(10 * time.Millisecond)
	}
	open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := j.all(); len(got) == 0 || got[len(got)-1] != "held" {
		t.Fatalf("answered but not applied: %v", got)
	}
}
