package cluster

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

func TestAppliedIndexWait(t *testing.T) {
	var a appliedIndex
	a.set(5)
	cases := []struct {
		name    string
		want    uint64
		advance uint64 // set before waiting ends (0: never)
		ok      bool
	}{
		{"already applied", 5, 0, true},
		{"below applied", 3, 0, true},
		{"applied later", 7, 7, true},
		{"applied past it", 9, 12, true},
		{"never applied", 20, 0, false},
	}
	for _, tc := range cases {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.wait(ctx, tc.want) }()
		if tc.advance > 0 {
			a.set(tc.advance)
		} else if !tc.ok {
			cancel()
		}
		err := <-done
		cancel()
		if (err == nil) != tc.ok {
			t.Errorf("%s: wait(%d) = %v", tc.name, tc.want, err)
		}
	}
	a.set(1)
	if a.get() != 12 {
		t.Fatalf("applied index moved back to %d", a.get())
	}
	if len(a.waiters) != 0 {
		t.Fatalf("%d waiters left behind", len(a.waiters))
	}
}

// TestFSMAppliesOnlyDurable: an entry is not applied (not visible, index
// not advanced) until this node's log is durable through it; a node that
// stops first leaves it unapplied.
func TestFSMAppliesOnlyDurable(t *testing.T) {
	f := newFSM()
	c := &counter{}
	_ = f.register(NamespaceKV, c)
	release, asked := make(chan error), make(chan uint64, 1)
	f.durable = func(i uint64) error { asked <- i; return <-release }
	done := make(chan any)
	go func() {
		done <- f.Apply(&raft.Log{Type: raft.LogCommand, Index: 1, Data: []byte{byte(NamespaceKV), 3}})
	}()
	select {
	case got := <-done:
		t.Fatalf("applied (%v) without waiting for the log to be durable", got)
	case i := <-asked:
		// Blocked on durability through its own index: nothing shows yet.
		if i != 1 || f.applied.get() != 0 || c.sum != 0 {
			t.Fatalf("waiting for durability through %d: applied %d, sum %d", i, f.applied.get(), c.sum)
		}
	}
	release <- nil
	if got := <-done; got != 3 || c.sum != 3 || f.applied.get() != 1 {
		t.Fatalf("after the fsync: result %v sum %d applied %d", got, c.sum, f.applied.get())
	}
	go func() {
		done <- f.Apply(&raft.Log{Type: raft.LogCommand, Index: 2, Data: []byte{byte(NamespaceKV), 4}})
	}()
	<-asked
	release <- errSyncStopped
	if got := <-done; !errors.Is(got.(error), errStopping) || c.sum != 3 || f.applied.get() != 1 {
		t.Fatalf("stopping node applied an unsynced entry: %v sum %d applied %d", got, c.sum, f.applied.get())
	}
}

// TestSnapshotCarriesAppliedIndex: a restored FSM knows how far it is
// applied; a snapshot without the index section (older releases) still
// restores.
func TestSnapshotCarriesAppliedIndex(t *testing.T) {
	f := newFSMWith(NamespaceKV, &counter{})
	f.Apply(&raft.Log{Type: raft.LogCommand, Index: 41, Data: []byte{byte(NamespaceKV), 2}})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := newFSMWith(NamespaceKV, &counter{})
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if g.applied.get() != 41 {
		t.Fatalf("restored applied index %d, want 41", g.applied.get())
	}
	// The same snapshot as an older release wrote it: magic, then the KV
	// section (1 byte: the counter's sum).
	old := append([]byte(snapMagic), byte(NamespaceKV), 1, 2)
	h := newFSMWith(NamespaceKV, &counter{})
	if err := h.Restore(io.NopCloser(bytes.NewReader(old))); err != nil || h.applied.get() != 0 {
		t.Fatalf("snapshot of an older release: %v, applied %d", err, h.applied.get())
	}
	if err := newFSM().register(snapIndexSection, &counter{}); err == nil {
		t.Fatal("a namespace took the snapshot index section's number")
	}
}
