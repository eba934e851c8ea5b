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
// index is that index, which is committed and fsynced on the leader.
// Notices to one follower are sent one at a time and coalesced.
//
// As etcd's, the notice leaves when the entry commits (and is fsynced
// here), not when the leader has applied it and answered, to every
// follower whose forwarded request is being served. It is written on
// raft's replication pipeline to that follower, after the entry itself:
// the follower then takes it as soon as it has stored the entry, without
// waiting for the leader to hear that it did (when it is the slower of
// the two followers, half the time at one client, that took one more
// round trip).

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
		follower := r.Header.Get(ForwardedHeader)
		if follower != "" && follower != n.id {
			defer n.notices.serve(raft.ServerID(follower))()
		}
		h.ServeHTTP(&answerWriter{ResponseWriter: w, n: n, follower: follower}, r)
	})
}

// commitNotices sends followers commit notices (see the file comment).
type commitNotices struct {
	mu    sync.Mutex
	peers map[raft.ServerID]*noticePeer
	// start runs a follower's sender; nil until the node starts.
	start func(id raft.ServerID, p *noticePeer)
	// serving counts the followers' forwarded requests being served.
	serving atomic.Int64
}

type noticePeer struct {
	// want is the highest index to tell this follower is committed;
	// match the last index it acknowledged holding, told the highest
	// commit index raft's own AppendEntries carried to it (both set by the
	// transport), sent the highest a notice carried. Under load raft's
	// next batch tells the follower the commit index anyway: no notice
	// then.
	want, match, told, sent atomic.Uint64
	kick                    chan struct{}
	// serving counts this follower's forwarded requests being served.
	serving atomic.Int64
	// pipe is raft's replication pipeline to the follower, while open.
	pipe atomic.Pointer[watchedPipeline]
	// addr is the follower's peer address, looked up once.
	addr raft.ServerAddress
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
		if p.want.Load() > 0 {
			p.poke()
		}
	}
}

// rejected records that follower id refused an AppendEntries: its log
// ends at last, so notices start again from there.
func (c *commitNotices) rejected(id raft.ServerID, last uint64) {
	p := c.peer(id)
	lower(&p.match, last)
	lower(&p.sent, last)
}

func lower(v *atomic.Uint64, to uint64) {
	for {
		old := v.Load()
		if old <= to || v.CompareAndSwap(old, to) {
			return
		}
	}
}

// pipeOpened and pipeClosed follow raft's replication pipeline to id.
func (c *commitNotices) pipeOpened(id raft.ServerID, w *watchedPipeline) { c.peer(id).pipe.Store(w) }
func (c *commitNotices) pipeClosed(id raft.ServerID, w *watchedPipeline) {
	c.peer(id).pipe.CompareAndSwap(w, nil)
}

// serve counts a request forwarded by follower id until the returned
// function is called.
func (c *commitNotices) serve(id raft.ServerID) func() {
	p := c.peer(id)
	p.serving.Add(1)
	c.serving.Add(1)
	return func() {
		p.serving.Add(-1)
		c.serving.Add(-1)
	}
}

// committed is told by the state machine that the log is committed and
// fsynced here through index: every follower whose forwarded request is
// being served is to be told so. The notice is written from here when
// that cannot block; else the follower's sender goroutine writes it (it
// runs only once this goroutine blocks, after the leader applied the
// entry and began its answer: 100-200 µs later, measured).
func (n *Node) committed(index uint64) {
	if n.notices.serving.Load() == 0 {
		return
	}
	n.notices.mu.Lock()
	defer n.notices.mu.Unlock()
	for _, p := range n.notices.peers {
		if p.serving.Load() > 0 {
			raise(&p.want, index)
			if !n.noticeNow(p) {
				p.poke()
			}
		}
	}
}

// noticeNow writes the notice due to p on its pipeline if that cannot
// block, reporting whether nothing is left to send.
func (n *Node) noticeNow(p *noticePeer) bool {
	match, pipe := p.match.Load(), p.pipe.Load()
	if pipe == nil {
		return false
	}
	idx := min(p.want.Load(), max(match, pipe.shipped.Load()))
	if idx <= max(p.sent.Load(), p.told.Load()) {
		return true
	}
	req, err := n.commitNotice(idx)
	if err != nil || !pipe.tryNotify(req, match) {
		return false
	}
	raise(&p.sent, idx)
	return true
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
	for {
		select {
		case <-n.stop:
			return
		case <-p.kick:
		}
		if err := n.sendNotice(id, p); err != nil {
			n.log.Debug("commit notice", "follower", id, "err", err)
		}
	}
}

// sendNotice sends follower id one notice if one is due: on the pipeline
// when open (no wait for the answer), else as an RPC once the follower
// acknowledged the entry.
func (n *Node) sendNotice(id raft.ServerID, p *noticePeer) error {
	match, pipe := p.match.Load(), p.pipe.Load()
	held := match
	if pipe != nil {
		held = max(held, pipe.shipped.Load())
	}
	idx := min(p.want.Load(), held)
	if idx <= max(p.sent.Load(), p.told.Load()) {
		return nil
	}
	req, err := n.commitNotice(idx)
	if err != nil {
		return err
	}
	if pipe != nil {
		ok, err := pipe.notify(req, match)
		if ok {
			raise(&p.sent, idx)
			return nil
		}
		if err != nil || idx > match {
			return err
		}
	}
	resp, err := n.sendCommit(id, p, req)
	switch {
	case err != nil:
		return err
	case !resp.Success:
		// Its log is not what the last acknowledgement said (a new
		// term truncated it): trust its answer instead.
		lower(&p.match, resp.LastLog)
	default:
		raise(&p.sent, idx)
	}
	return nil
}

// commitNotice is an empty AppendEntries whose previous entry is index
// and whose commit index is index.
func (n *Node) commitNotice(index uint64) (*raft.AppendEntriesRequest, error) {
	term := n.readyTerm.Load()
	if term == 0 || n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
		return nil, ErrNotLeader
	}
	// Entries since this leader's barrier are of its term; older ones are
	// read from the log.
	prevTerm := term
	if index < n.termStart.Load() {
		var l raft.Log
		if err := n.logs.GetLog(index, &l); err != nil {
			return nil, err
		}
		prevTerm = l.Term
	}
	self := n.trans.EncodePeer(raft.ServerID(n.id), n.trans.LocalAddr())
	return &raft.AppendEntriesRequest{
		RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(n.id), Addr: self},
		Term:         term,
		PrevLogEntry: index, PrevLogTerm: prevTerm, LeaderCommitIndex: index,
	}, nil
}

// sendCommit sends follower id the notice req as an RPC.
func (n *Node) sendCommit(id raft.ServerID, p *noticePeer, req *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	if p.addr == "" {
		f := n.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return nil, err
		}
		for _, s := range f.Configuration().Servers {
			if s.ID == id {
				p.addr = s.Address
			}
		}
		if p.addr == "" {
			return nil, ErrNoMember
		}
	}
	addr := p.addr
	var resp raft.AppendEntriesResponse
	if err := n.trans.AppendEntries(id, addr, req, &resp); err != nil {
		p.addr = "" // it may have moved: look it up again
		return nil, err
	}
	return &resp, nil
}
