package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"
)

// localNodes says how startLocalNodes starts its members.
type localNodes struct {
	// listenHost is the peer listener's host (default 127.0.0.1).
	listenHost string
	// heartbeat is the heartbeat interval (default 50 ms; the election
	// timeout is ten of them).
	heartbeat time.Duration
	// reg registers state machines before a node starts.
	reg func(*Node)
	// handler serves a node's forwarded client requests.
	handler func(*Node) http.Handler
}

// startLocalNodes starts an n-member cluster in this process, peer ports
// on 127.0.0.1. It returns the nodes once one leads and all know it, and
// that leader.
func startLocalNodes(t *testing.T, n int, o localNodes) ([]*Node, *Node) {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var initial []InitialMember
	for i, p := range ports {
		initial = append(initial, InitialMember{Name: fmt.Sprintf("m%d", i), PeerURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", p)}})
	}
	if o.listenHost == "" {
		o.listenHost = "127.0.0.1"
	}
	if o.heartbeat == 0 {
		o.heartbeat = 50 * time.Millisecond
	}
	nodes := make([]*Node, n)
	for i, p := range ports {
		node, err := New(Config{
			Name: initial[i].Name, DataDir: t.TempDir(), ListenPeer: fmt.Sprintf("%s:%d", o.listenHost, p),
			PeerURLs: initial[i].PeerURLs, InitialCluster: initial, InitialClusterState: "new", Token: t.Name(),
			MaxVoters: 5, HeartbeatInterval: o.heartbeat, ElectionTimeout: 10 * o.heartbeat,
			SnapshotCount: 100000, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		if o.reg != nil {
			o.reg(node)
		}
		var h http.Handler = http.NotFoundHandler()
		if o.handler != nil {
			h = o.handler(node)
		}
		if err := node.Start(h); err != nil {
			t.Fatal(err)
		}
		nodes[i] = node
		t.Cleanup(func() { node.Stop() })
	}
	// Until every member knows the leader, a follower's writes fail with
	// ErrNoLeader.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var leader *Node
		known := 0
		for _, node := range nodes {
			if node.IsLeader() && node.readyTerm.Load() == node.raft.CurrentTerm() {
				leader = node
			}
			if _, id := node.raft.LeaderWithID(); id != "" {
				known++
			}
		}
		if leader != nil && known == len(nodes) {
			return nodes, leader
		}
	}
	t.Fatal("no leader known to every member")
	return nil, nil
}

// TestProposalStream proposes through a follower, many at once: on the
// stream, then over HTTP after the leader refuses the stream as a leader of
// an earlier release does. Each answer must be the follower's own result
// for its entry: with a counter as the state machine, the running sum of
// every value proposed, in log order.
func TestProposalStream(t *testing.T) {
	nodes, leader := startLocalNodes(t, 3, localNodes{reg: func(n *Node) { _ = n.Register(NamespaceKV, &counter{}) }})
	var f *Node
	for _, n := range nodes {
		if n != leader {
			f = n
			break
		}
	}
	type done struct {
		index uint64
		value byte
		res   any
	}
	var mu sync.Mutex
	var all []done
	propose := func(t *testing.T, count int) {
		var wg sync.WaitGroup
		errs := make(chan error, count)
		for i := range count {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := byte(1 + i%7)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				res, idx, err := f.ProposeAnywhere(ctx, NamespaceKV, []byte{v})
				if err != nil {
					errs <- err
					return
				}
				// The follower applied it before answering.
				if got := f.fsm.applied.get(); got < idx {
					errs <- fmt.Errorf("answered at index %d with the follower applied to %d", idx, got)
				}
				mu.Lock()
				all = append(all, done{idx, v, res})
				mu.Unlock()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}

	t.Run("stream", func(t *testing.T) {
		propose(t, 300)
		f.pstreams.mu.Lock()
		s, refused := f.pstreams.cur, f.pstreams.refusedAddr
		f.pstreams.mu.Unlock()
		if s == nil || refused != "" {
			t.Fatalf("the follower's writes did not go on a stream (stream %v, refused by %q)", s, refused)
		}
	})
	t.Run("http-fallback", func(t *testing.T) {
		for _, n := range nodes {
			n.mux.noProposals.Store(true)
		}
		f.pstreams.mu.Lock()
		if s := f.pstreams.cur; s != nil {
			s.fail(errors.New("test: as if the leader was replaced"))
		}
		f.pstreams.mu.Unlock()
		propose(t, 300)
		f.pstreams.mu.Lock()
		refused := f.pstreams.refusedAddr
		f.pstreams.mu.Unlock()
		if want, _ := f.raft.LeaderWithID(); refused != string(want) {
			t.Fatalf("refused by %q, want the leader %q", refused, want)
		}
	})

	sort.Slice(all, func(i, j int) bool { return all[i].index < all[j].index })
	sum := 0
	for i, d := range all {
		if i > 0 && d.index == all[i-1].index {
			t.Fatalf("two proposals answered with index %d", d.index)
		}
		sum += int(d.value)
		if d.res != sum {
			t.Fatalf("proposal at index %d answered %v; the running sum there is %d", d.index, d.res, sum)
		}
	}
	if len(all) != 600 {
		t.Fatalf("%d of 600 proposals answered", len(all))
	}
}

// TestProposalStreamAnswers: what a follower makes of a leader's answers on
// the stream, the leader played by the test on a pipe: answers go to their
// batches in order, and a stream cut mid-answer leaves the rest unknown
// (may or may not be applied), never "not applied"; commit notices go to
// this node's raft with the leader's identity.
func TestProposalStreamAnswers(t *testing.T) {
	fol, lead := net.Pipe()
	defer lead.Close()
	n := &Node{id: "f1", cfg: Config{ElectionTimeout: time.Second}, stop: make(chan struct{}), streamNotice: streamNotices{kick: make(chan struct{}, 1)}}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	s := &proposalStream{n: n, addr: "127.0.0.1:7001", leaderID: "l1", conn: fol, ctx: ctx, bw: bufio.NewWriter(fol), idleSince: time.Now()}
	go s.readAnswers()
	mk := func(vals ...byte) []*proposal {
		var b []*proposal
		for _, v := range vals {
			b = append(b, &proposal{data: []byte{byte(NamespaceKV), v}, done: make(chan proposalAnswer, 1)})
		}
		return b
	}
	applied := func(i uint64) []byte { return binary.AppendUvarint([]byte{proposalApplied}, i) }
	notice := func(term, index, prevTerm uint64) []byte {
		return binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint(nil, term), index), prevTerm)
	}
	br := bufio.NewReader(lead)

	// Two batches pipelined; the leader reads both, then answers both.
	b1, b2 := mk(1, 2), mk(3)
	sent := make(chan *streamBatch, 2)
	go func() {
		for _, b := range [][]*proposal{b1, b2} {
			sb, err := s.send(b)
			if err != nil {
				t.Error(err)
			}
			sent <- sb
		}
	}()
	e1, err := readStreamBatch(br)
	if err != nil || len(e1) != 2 || !bytes.Equal(e1[1], []byte{byte(NamespaceKV), 2}) {
		t.Fatalf("first frame: %q %v", e1, err)
	}
	e2, err := readStreamBatch(br)
	if err != nil || len(e2) != 1 || !bytes.Equal(e2[0], []byte{byte(NamespaceKV), 3}) {
		t.Fatalf("second frame: %q %v", e2, err)
	}
	ans := bytes.Join([][]byte{applied(10), applied(11), notice(3, 11, 2), applied(12), notice(0, 0, 0)}, nil)
	if _, err := lead.Write(ans); err != nil {
		t.Fatal(err)
	}
	<-(<-sent).answered
	<-(<-sent).answered
	for i, p := range append(b1, b2...) {
		if a := <-p.done; a.err != nil || a.index != uint64(10+i) {
			t.Fatalf("answer %d: %+v", i, a)
		}
	}
	// The first batch's notice, for raft; the second had none.
	if nt, want := n.streamNotice.newest(), (streamNotice{term: 3, index: 11, prevTerm: 2, leaderID: "l1", leaderAddr: "127.0.0.1:7001"}); nt != want {
		t.Fatalf("commit notice %+v, want %+v", nt, want)
	}

	// A batch of two whose answer is cut after the first.
	b3 := mk(4, 5)
	go func() {
		sb, err := s.send(b3)
		if err != nil {
			t.Error(err)
		}
		sent <- sb
	}()
	if _, err := readStreamBatch(br); err != nil {
		t.Fatal(err)
	}
	if _, err := lead.Write(applied(13)); err != nil {
		t.Fatal(err)
	}
	lead.Close()
	<-(<-sent).answered
	if a := <-b3[0].done; a.err != nil || a.index != 13 {
		t.Fatalf("answer read before the cut: %+v", a)
	}
	if a := <-b3[1].done; a.err == nil || errors.Is(a.err, ErrNoLeader) {
		t.Fatalf("answer lost in the cut: %+v, want an unknown outcome", a)
	}
	// The stream is spent: a batch is refused before anything is sent.
	if _, err := s.send(mk(6)); err == nil {
		t.Fatal("a failed stream took another batch")
	}
}

// TestReadStreamBatch: the leader's reading of batch frames refuses what
// its followers never write.
func TestReadStreamBatch(t *testing.T) {
	entry := func(ns Namespace, cmd ...byte) []byte { return appendProposal(nil, append([]byte{byte(ns)}, cmd...)) }
	frame := func(count uint64, entries ...[]byte) []byte {
		b := binary.AppendUvarint(nil, count)
		for _, e := range entries {
			b = append(b, e...)
		}
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want int // entries; -1: refused
	}{
		{"one", frame(1, entry(NamespaceKV, 1)), 1},
		{"two namespaces", frame(2, entry(NamespaceKV, 1), entry(NamespaceMembers, 2)), 2},
		{"empty batch", frame(0), -1},
		{"too many", frame(maxProposalBatch + 1), -1},
		{"fewer entries than counted", frame(2, entry(NamespaceKV, 1)), -1},
		{"entry cut short", frame(1, entry(NamespaceKV, 1, 2, 3)[:3]), -1},
		{"empty entry", frame(1, []byte{0}), -1},
		{"scheduler namespace", frame(1, entry(NamespaceSchedule, 1)), -1},
		{"entry longer than a batch may be", frame(1, binary.AppendUvarint(nil, maxProposalsBody+1)), -1},
	}
	for _, tc := range cases {
		got, err := readStreamBatch(bufio.NewReader(bytes.NewReader(tc.in)))
		if tc.want < 0 {
			if err == nil {
				t.Errorf("%s: read %d entries, want refused", tc.name, len(got))
			}
			continue
		}
		if err != nil || len(got) != tc.want {
			t.Errorf("%s: %d entries, %v; want %d", tc.name, len(got), err, tc.want)
		}
	}
}

// TestStreamCommitNotices: the commit notices that come with the leader's
// answers reach the follower's raft, which takes them. The heartbeat is
// long (raft tells followers a new commit index after half of it when no
// new entries follow), so the notice is what lets the follower apply a
// write it forwarded; it is counted once raft accepted it.
func TestStreamCommitNotices(t *testing.T) {
	nodes, leader := startLocalNodes(t, 3, localNodes{heartbeat: 500 * time.Millisecond, reg: func(n *Node) { _ = n.Register(NamespaceKV, &counter{}) }})
	var f *Node
	for _, n := range nodes {
		if n != leader {
			f = n
			break
		}
	}
	for i := range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, idx, err := f.ProposeAnywhere(ctx, NamespaceKV, []byte{1})
		cancel()
		if err != nil {
			t.Fatalf("proposal %d: %v", i, err)
		}
		if f.fsm.applied.get() < idx {
			t.Fatalf("proposal %d answered at %d with the follower applied to %d", i, idx, f.fsm.applied.get())
		}
	}
	acc, ref := f.streamNotice.accepted.Load(), f.streamNotice.refused.Load()
	t.Logf("commit notices: %d accepted, %d refused", acc, ref)
	if acc == 0 {
		t.Fatalf("raft took none of the stream's commit notices (%d refused)", ref)
	}
}
