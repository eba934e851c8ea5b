package cluster

import (
	"errors"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fakePipe is raft's AppendPipeline to one follower: it records what was
// written, and the test hands out the answers.
type fakePipe struct {
	mu      sync.Mutex
	written []*raft.AppendEntriesRequest
	answers chan raft.AppendFuture
}

type fakeFuture struct {
	req  *raft.AppendEntriesRequest
	resp *raft.AppendEntriesResponse
}

func (f *fakeFuture) Error() error                          { return nil }
func (f *fakeFuture) Start() time.Time                      { return time.Time{} }
func (f *fakeFuture) Request() *raft.AppendEntriesRequest   { return f.req }
func (f *fakeFuture) Response() *raft.AppendEntriesResponse { return f.resp }

func (p *fakePipe) AppendEntries(args *raft.AppendEntriesRequest, _ *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.written = append(p.written, args)
	return &fakeFuture{req: args}, nil
}
func (p *fakePipe) Consumer() <-chan raft.AppendFuture { return p.answers }
func (p *fakePipe) Close() error                       { return nil }

// writtenPrev lists the PrevLogEntry of each request written, entries
// requests as -1-lastIndex.
func (p *fakePipe) writtenPrev() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for _, r := range p.written {
		if len(r.Entries) > 0 {
			out = append(out, -int(ackedThrough(r)))
		} else {
			out = append(out, int(r.PrevLogEntry))
		}
	}
	return out
}

func notice(index uint64) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{Term: 2, PrevLogEntry: index, PrevLogTerm: 2, LeaderCommitIndex: index}
}

// answer hands the watched pipeline the follower's answer to its oldest
// unanswered request and waits until raft (the test) receives it.
func answer(t *testing.T, fp *fakePipe, w *watchedPipeline, i int, resp raft.AppendEntriesResponse) {
	t.Helper()
	fp.mu.Lock()
	req := fp.written[i]
	fp.mu.Unlock()
	fp.answers <- &fakeFuture{req: req, resp: &resp}
	select {
	case <-w.out:
	case <-time.After(5 * time.Second):
		t.Fatal("answer never reached raft")
	}
}

// TestPipelineNotices: a commit notice goes on raft's pipeline only behind
// the entry it names (or once the follower acknowledged it), the no-wait
// form only when nothing is unanswered, and the answers keep the
// follower's acknowledged index.
func TestPipelineNotices(t *testing.T) {
	var c commitNotices
	fp := &fakePipe{answers: make(chan raft.AppendFuture)}
	w := &watchedPipeline{AppendPipeline: fp, t: timedTransport{notices: &c}, id: "f", out: make(chan raft.AppendFuture, 16), done: make(chan struct{})}
	go w.relay()
	defer w.Close()
	c.pipeOpened("f", w)
	p := c.peer("f")
	if p.pipe.Load() != w {
		t.Fatal("pipeline not recorded")
	}

	entries := &raft.AppendEntriesRequest{Term: 2, PrevLogEntry: 0, Entries: []*raft.Log{{Index: 1}, {Index: 2}, {Index: 3}}}
	if _, err := w.AppendEntries(entries, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		send   func() bool
		wantOK bool
	}{
		{"no wait while entries are unanswered", func() bool { return w.tryNotify(notice(3), 0) }, false},
		{"behind its entry", func() bool { ok, _ := w.notify(notice(3), 0); return ok }, true},
		{"entry never sent", func() bool { ok, _ := w.notify(notice(5), 0); return ok }, false},
		{"entry acknowledged elsewhere", func() bool { ok, _ := w.notify(notice(5), 5); return ok }, true},
	}
	for _, s := range steps {
		if ok := s.send(); ok != s.wantOK {
			t.Errorf("%s: written %v, want %v", s.name, ok, s.wantOK)
		}
	}
	if got, want := fp.writtenPrev(), []int{-3, 3, 5}; !equalInts(got, want) {
		t.Fatalf("written %v, want %v", got, want)
	}

	answer(t, fp, w, 0, raft.AppendEntriesResponse{Term: 2, Success: true, LastLog: 3})
	if m := p.match.Load(); m != 3 {
		t.Errorf("acknowledged through %d, want 3", m)
	}
	answer(t, fp, w, 1, raft.AppendEntriesResponse{Term: 2, Success: true, LastLog: 3})
	// The follower's log turned out shorter (a new term truncated it).
	p.sent.Store(5)
	answer(t, fp, w, 2, raft.AppendEntriesResponse{Term: 2, Success: false, LastLog: 2})
	if m, s := p.match.Load(), p.sent.Load(); m != 2 || s != 2 {
		t.Errorf("after a refusal: match %d, sent %d; want 2, 2", m, s)
	}
	if !w.tryNotify(notice(2), p.match.Load()) {
		t.Error("no-wait notice refused with every answer read")
	}
	w.mu.Lock()
	if w.tryNotify(notice(2), 2) {
		t.Error("no-wait notice written while another write holds the connection")
	}
	w.mu.Unlock()

	w.Close()
	if p.pipe.Load() != nil {
		t.Error("closed pipeline still used for notices")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCommittedNotifiesServedFollowers: a commit is to be told to the
// followers whose forwarded requests are being served, and only while
// they are.
func TestCommittedNotifiesServedFollowers(t *testing.T) {
	n := &Node{id: "self"}
	done := n.notices.serve("a")
	idle := n.notices.peer("b")
	n.committed(7)
	a := n.notices.peer("a")
	if got := a.want.Load(); got != 7 {
		t.Errorf("served follower told to %d, want 7", got)
	}
	select {
	case <-a.kick:
	default:
		t.Error("served follower's sender not woken")
	}
	if got := idle.want.Load(); got != 0 {
		t.Errorf("idle follower told to %d, want nothing", got)
	}
	done()
	n.committed(9)
	if got := a.want.Load(); got != 7 {
		t.Errorf("follower told %d after its request was answered, want 7 still", got)
	}
	if s := n.notices.serving.Load(); s != 0 {
		t.Errorf("%d requests still counted as served", s)
	}
}

// TestFSMCommittedBeforeApply: the state machine tells of a commit once
// the entry is durable here and before it is applied; not at all when
// the node stops first.
func TestFSMCommittedBeforeApply(t *testing.T) {
	cases := []struct {
		name       string
		durableErr error
		want       []string
	}{
		{"durable", nil, []string{"durable 4", "committed 4", "applied 4"}},
		{"stopping", errSyncStopped, []string{"durable 4"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var order []string
			f := newFSMWith(NamespaceSchedule, applyRecorder(func(i uint64) { order = append(order, "applied "+itoa(i)) }))
			f.durable = func(i uint64) error { order = append(order, "durable "+itoa(i)); return tc.durableErr }
			f.committed = func(i uint64) { order = append(order, "committed "+itoa(i)) }
			res := f.Apply(&raft.Log{Index: 4, Type: raft.LogCommand, Data: []byte{byte(NamespaceSchedule), 1}})
			if tc.durableErr != nil && !errors.Is(res.(error), errStopping) {
				t.Errorf("result %v, want %v", res, errStopping)
			}
			if len(order) != len(tc.want) {
				t.Fatalf("order %q, want %q", order, tc.want)
			}
			for i := range order {
				if order[i] != tc.want[i] {
					t.Fatalf("order %q, want %q", order, tc.want)
				}
			}
		})
	}
}

type applyRecorder func(index uint64)

func (r applyRecorder) Apply(index uint64, _ []byte) any { r(index); return nil }
func (applyRecorder) Save(_ io.Writer) error             { return nil }
func (applyRecorder) Restore(_ io.Reader) error          { return nil }

func itoa(i uint64) string { return strconv.FormatUint(i, 10) }
