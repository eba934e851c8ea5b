package cluster

// Read-your-writes through any member.
//
// etcd answers a write only once the member that took it applied it, so a
// client that stays on one member always reads its own writes (etcd's v2
// client pins a member and relies on it). Here a follower forwards writes
// to the leader over the peer port; the leader stamps every answer with
// the log index it reflects (AnswerIndexHeader), and the follower answers
// its client only once it applied that index itself (Node.Forward,
// ProposeAnywhere). A quorum read forwarded to the leader works the same
// way, so later local reads on that member are as new as it.
//
// hashicorp/raft tells followers the commit index only with the next
// AppendEntries: new entries, or an empty one every CommitTimeout. etcd
// broadcasts it as soon as it moves. So that a follower waiting for an
// answer's index does not wait for that tick, the leader sends the
// forwarding follower the AppendEntries raft would send, with no entries:
// its previous entry is the answer's entry (the follower accepts it only if
// its log holds that entry, so their logs match up to it), and its commit
// index is that index, which is committed and applied on the leader.
// Notices to one follower are sent one at a time and coalesced. On a
// follower's proposal stream the notice rides in the leader's answer
// instead (proposalstream.go), once the follower has acknowledged the
// entry; until then, the leader sends it as here.

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// AnswerIndexHeader carries, in a leader's answer on the peer port, the
// log index the answer reflects (the leader's applied index when it wrote
// the answer's header).
const AnswerIndexHeader = "X-Pith-Answer-Index"

// WaitApplied returns once this node applied the log through index, or
// ctx's error.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	return n.fsm.applied.wait(ctx, index)
}

// applyWait bounds how long a follower waits to apply an answer's index,
// like etcd's request timeout (5 s plus two election timeouts).
func (n *Node) applyWait() time.Duration {
	return 5*time.Second + 2*n.cfg.ElectionTimeout
}

// awaitAnswer waits until this node applied the index the leader's answer
// reflects (no header: an older leader; nothing to wait for).
func (n *Node) awaitAnswer(ctx context.Context, h http.Header) error {
	idx, err := strconv.ParseUint(h.Get(AnswerIndexHeader), 10, 64)
	if err != nil || idx == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.applyWait())
	defer cancel()
	if err := n.fsm.applied.wait(ctx, idx); err != nil {
		return fmt.Errorf("the leader answered at log index %d but this member applied only %d: %v (a write took effect on the leader; retry the read on another member)", idx, n.fsm.applied.get(), err)
	}
	return nil
}

// answerWriter stamps a peer-port answer with AnswerIndexHeader when its
// header is written, and nudges the forwarding follower's commit index.
type answerWriter struct {
	http.ResponseWriter
	n        *Node
	follower string
	wrote    bool
}

func (w *answerWriter) stamp() {
	if w.wrote {
		return
	}
	w.wrote = true
	idx := w.n.fsm.applied.get()
	w.Header().Set(AnswerIndexHeader, strconv.FormatUint(idx, 10))
	if w.follower != "" && w.n.IsLeader() {
		w.n.notifyCommit(raft.ServerID(w.follower), idx)
	}
}

func (w *answerWriter) WriteHeader(code int) {
	w.stamp()
	w.ResponseWriter.WriteHeader(code)
}

func (w *answerWriter) Write(b []byte) (int, error) {
	w.stamp()
	return w.ResponseWriter.Write(b)
}

func (w *answerWriter) Flush() {
	w.stamp()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// stampAnswers wraps the peer port's handler with answerWriter.
func (n *Node) stampAnswers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&answerWriter{ResponseWriter: w, n: n, follower: r.Header.Get(ForwardedHeader)}, r)
	})
}

// commitNotices sends followers commit notices (see the file comment).
type commitNotices struct {
	mu    sync.Mutex
	peers map[raft.ServerID]*noticePeer
	// start runs a follower's sender; nil until the node starts.
	start func(id raft.ServerID, p *noticePeer)
}

type noticePeer struct {
	// want is the highest index an answer to this follower reflected;
	// match the last index it acknowledged holding, told the highest
	// commit index raft's own AppendEntries carried to it (both set by the
	// transport). Under load raft's next batch tells the follower the
	// commit index anyway: no notice then.
	want, match, told atomic.Uint64
	kick              chan struct{}
	// addr is the follower's peer address, looked up once.
	addr raft.ServerAddress
	// matched signals advances of match (a proposal stream's answer
	// waits for them).
	matched changeSignal
}

// waitMatch waits until the follower acknowledged holding index, or
// until stop or timeout closes; it reports whether it did.
func (p *noticePeer) waitMatch(index uint64, timeout <-chan time.Time, stop <-chan struct{}) bool {
	for {
		ch := p.matched.changed()
		if p.match.Load() >= index {
			return true
		}
		select {
		case <-ch:
		case <-timeout:
			return false
		case <-stop:
			return false
		}
	}
}

func (c *commitNotices) peer(id raft.ServerID) *noticePeer {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[id]
	if p == nil {
		if c.peers == nil {
			c.peers = map[raft.ServerID]*noticePeer{}
		}
		p = &noticePeer{kick: make(chan struct{}, 1)}
		c.peers[id] = p
		if c.start != nil {
			c.start(id, p)
		}
	}
	return p
}

func raise(v *atomic.Uint64, to uint64) {
	for {
		old := v.Load()
		if old >= to || v.CompareAndSwap(old, to) {
			return
		}
	}
}

func (p *noticePeer) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// acked records that follower id holds the log through index (an
// AppendEntries it answered with success).
func (c *commitNotices) acked(id raft.ServerID, index uint64) {
	p := c.peer(id)
	if index > p.match.Load() {
		raise(&p.match, index)
		p.matched.bump()
		if p.want.Load() > 0 {
			p.poke()
		}
	}
}

// sent records that raft sent follower id an AppendEntries that commits
// through index once the follower accepts it.
func (c *commitNotices) sent(id raft.ServerID, index uint64) {
	if index > 0 {
		raise(&c.peer(id).told, index)
	}
}

// notifyCommit asks for follower id to be told that index is committed.
func (n *Node) notifyCommit(id raft.ServerID, index uint64) {
	if index == 0 || string(id) == n.id {
		return
	}
	p := n.notices.peer(id)
	raise(&p.want, index)
	p.poke()
}

// sendNotices tells follower id the commit index wanted for it, as far as
// the follower holds the log.
func (n *Node) sendNotices(id raft.ServerID, p *noticePeer) {
	var sent uint64
	for {
		select {
		case <-n.stop:
			return
		case <-p.kick:
		}
		idx := min(p.want.Load(), p.match.Load())
		if idx <= max(sent, p.told.Load()) {
			continue
		}
		resp, err := n.sendCommit(id, p, idx)
		switch {
		case err != nil:
			n.log.Debug("commit notice", "follower", id, "index", idx, "err", err)
		case !resp.Success:
			// Its log is not what the last acknowledgement said (a new
			// term truncated it): trust its answer instead.
			p.match.Store(min(resp.LastLog, p.match.Load()))
		default:
			sent = idx
		}
	}
}

// commitTerms are the terms of a commit notice for index from this
// leader: its own, and that of the entry at index (the notice's previous
// entry), which must be committed and applied here.
func (n *Node) commitTerms(index uint64) (term, prevTerm uint64, err error) {
	term = n.readyTerm.Load()
	if term == 0 || n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
		return 0, 0, ErrNotLeader
	}
	// Entries since this leader's barrier are of its term; older ones are
	// read from the log.
	prevTerm = term
	if index < n.termStart.Load() {
		var l raft.Log
		if err := n.logs.GetLog(index, &l); err != nil {
			return 0, 0, err
		}
		prevTerm = l.Term
	}
	return term, prevTerm, nil
}

// commitNotice is the empty AppendEntries by which leader tells a
// follower that the entry at index, of term prevTerm, is committed in term:
// sent over the network (sendCommit) or, carried in a proposal stream's
// answer, handed to the follower's own raft (deliverNotices).
func (n *Node) commitNotice(leader raft.ServerID, addr raft.ServerAddress, term, index, prevTerm uint64) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{
		RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(leader), Addr: n.trans.EncodePeer(leader, addr)},
		Term:         term,
		PrevLogEntry: index, PrevLogTerm: prevTerm, LeaderCommitIndex: index,
	}
}

// raftServer is member id's entry in raft's latest configuration; ok is
// false when it has none.
func (n *Node) raftServer(id raft.ServerID) (s raft.Server, ok bool, err error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Server{}, false, err
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == id {
			return s, true, nil
		}
	}
	return raft.Server{}, false, nil
}

// sendCommit sends follower id an empty AppendEntries whose previous entry
// is index and whose commit index is index.
func (n *Node) sendCommit(id raft.ServerID, p *noticePeer, index uint64) (*raft.AppendEntriesResponse, error) {
	term, prevTerm, err := n.commitTerms(index)
	if err != nil {
		return nil, err
	}
	if p.addr == "" {
		s, ok, err := n.raftServer(id)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ErrNoMember
		}
		p.addr = s.Address
	}
	addr := p.addr
	req := n.commitNotice(raft.ServerID(n.id), n.trans.LocalAddr(), term, index, prevTerm)
	var resp raft.AppendEntriesResponse
	if err := n.trans.AppendEntries(id, addr, req, &resp); err != nil {
		p.addr = "" // it may have moved: look it up again
		return nil, err
	}
	return &resp, nil
}
