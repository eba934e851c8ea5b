package cluster

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

// counter is a tiny namespace: it sums the bytes it is given.
type counter struct{ sum int }

func (c *counter) Apply(_ uint64, b []byte) any {
	for _, x := range b {
		c.sum += int(x)
	}
	return c.sum
}
func (c *counter) Save(w io.Writer) error { _, err := w.Write([]byte{byte(c.sum)}); return err }
func (c *counter) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil || len(b) != 1 {
		return errors.New("bad counter snapshot")
	}
	c.sum = int(b[0])
	return nil
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMDispatchAndSnapshot(t *testing.T) {
	f := newFSM()
	a, b := &counter{}, &counter{}
	if err := f.register(NamespaceKV, a); err != nil {
		t.Fatal(err)
	}
	if err := f.register(NamespaceSchedule, b); err != nil {
		t.Fatal(err)
	}
	if err := f.register(NamespaceKV, a); err == nil {
		t.Fatal("namespace registered twice")
	}
	cases := []struct {
		data []byte
		want any
	}{
		{[]byte{byte(NamespaceKV), 1, 2}, 3},
		{[]byte{byte(NamespaceSchedule), 5}, 5},
		{[]byte{byte(NamespaceKV), 4}, 7},
		{[]byte{9, 1}, ErrUnknownNamespace},
	}
	for i, tc := range cases {
		if got := f.Apply(&raft.Log{Type: raft.LogCommand, Index: uint64(i + 1), Data: tc.data}); got != tc.want {
			t.Fatalf("entry %d: %v, want %v", i, got, tc.want)
		}
	}
	if got := f.Apply(&raft.Log{Type: raft.LogConfiguration, Data: []byte{1, 1}}); got != nil || a.sum != 7 {
		t.Fatalf("configuration entry reached a namespace: %v", got)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	// Restore into an FSM that lacks the schedule namespace: its section
	// is skipped, the KV's restored.
	g := newFSM()
	c := &counter{}
	_ = g.register(NamespaceKV, c)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if c.sum != 7 {
		t.Fatalf("restored sum %d, want 7", c.sum)
	}
	if err := g.Restore(io.NopCloser(bytes.NewReader([]byte("garbage")))); err == nil {
		t.Fatal("restored a snapshot without the header")
	}
	trunc := sink.Bytes()[:len(sink.Bytes())-1]
	if err := newFSMWith(NamespaceSchedule, &counter{}).Restore(io.NopCloser(bytes.NewReader(trunc))); err == nil {
		t.Fatal("restored a truncated snapshot")
	}
}

// capturedCounter is a counter that is a Capturer: its copy is the sum
// at Capture, written whenever Persist runs.
type capturedCounter struct{ counter }

func (c *capturedCounter) Capture() func(io.Writer) error {
	sum := c.sum
	return func(w io.Writer) error { _, err := w.Write([]byte{byte(sum)}); return err }
}

// A Capturer's section is the state at Snapshot, however many entries
// were applied before Persist wrote it.
func TestSnapshotCapturesBeforeApplies(t *testing.T) {
	kv, sched := &capturedCounter{}, &counter{}
	f := newFSMWith(NamespaceKV, kv)
	_ = f.register(NamespaceSchedule, sched)
	f.Apply(&raft.Log{Type: raft.LogCommand, Index: 1, Data: []byte{byte(NamespaceKV), 5}})
	f.Apply(&raft.Log{Type: raft.LogCommand, Index: 2, Data: []byte{byte(NamespaceSchedule), 6}})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(&raft.Log{Type: raft.LogCommand, Index: 3, Data: []byte{byte(NamespaceKV), 7}})
	f.Apply(&raft.Log{Type: raft.LogCommand, Index: 4, Data: []byte{byte(NamespaceSchedule), 8}})
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	gkv, gsched := &capturedCounter{}, &counter{}
	g := newFSMWith(NamespaceKV, gkv)
	_ = g.register(NamespaceSchedule, gsched)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if gkv.sum != 5 || gsched.sum != 6 || g.applied.get() != 2 {
		t.Fatalf("restored kv %d, schedule %d at index %d; want 5, 6 at 2 (the state at Snapshot)", gkv.sum, gsched.sum, g.applied.get())
	}
}

func newFSMWith(ns Namespace, sm StateMachine) *fsm {
	f := newFSM()
	_ = f.register(ns, sm)
	return f
}

func TestMemberIDs(t *testing.T) {
	a := MemberID([]string{"http://10.0.0.1:2380", "http://10.0.0.2:2380"}, "t")
	b := MemberID([]string{"http://10.0.0.2:2380", "http://10.0.0.1:2380"}, "t")
	if a != b {
		t.Fatal("member ID depends on URL order")
	}
	if a == MemberID([]string{"http://10.0.0.1:2380", "http://10.0.0.2:2380"}, "other") {
		t.Fatal("member ID ignores the cluster token")
	}
	for _, bad := range []string{"10.0.0.1:2380", "ftp://h:1", "http://h"} {
		if _, err := peerAddr(bad); err == nil {
			t.Errorf("peer URL %q accepted", bad)
		}
	}
}
