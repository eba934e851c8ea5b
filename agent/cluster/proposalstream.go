package cluster

// Forwarded proposals on a stream of their own.
//
// A follower's batches (forward.go) went to the leader as HTTP requests,
// one a batch. Under load the leader's peer-port HTTP serving took about 7%
// of its CPU: request parsing, response headers, and the background read
// net/http starts on every request (the leader made 40% more read calls
// than etcd's, most of them EAGAIN). etcd's followers hand proposals to
// the leader over a stream they already hold. Here a follower keeps one
// connection to the leader, announced on the peer port by a protocol byte
// of its own; it writes batch frames, and the leader answers them in the
// order it read them, with the answers the HTTP endpoint writes. Batches
// pipeline on it; a reader and a writer serve it at each end.
//
// A follower answers its client once it applied the entry (read your
// writes); hashicorp/raft tells it the commit index only with the leader's
// next AppendEntries. So each answer carries the commit notice the leader
// would otherwise send as an AppendEntries of its own (readyourwrites.go):
// the follower hands it to its raft as if it came from the network, where
// raft checks it as any AppendEntries (term, and that the follower's log
// holds the entry with the same term), and the leader saves an RPC.
//
//	follower → leader: hello  = uvarint len(member ID), member ID
//	leader → follower: ack    = streamVersion, uvarint len(leader ID), leader ID
//	follower → leader: batch  = uvarint count, count × (uvarint len, entry)
//	leader → follower: answer = count × answer (readProposalAnswer),
//	                            uvarint term, uvarint index, uvarint prevTerm
//	                            (the commit notice: term 0 for none)
//
// A leader of an earlier release closes a connection whose protocol byte
// it does not know: the follower then posts its batches over HTTP, as
// before, and tries the stream again after streamRetry.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

const (
	streamVersion byte = 1
	// streamRetry is how long a follower posts over HTTP to a leader that
	// refused the stream before it asks again (a rolling update may have
	// replaced it at the same address).
	streamRetry = time.Minute
	// streamIOTimeout bounds the handshake and each write of a frame.
	streamIOTimeout = 10 * time.Second
	// A follower closes a stream idle this long; a leader closes one idle
	// far longer (a follower that went away), so a batch never meets a
	// stream the leader is closing.
	streamIdle       = time.Minute
	streamIdleLeader = 5 * time.Minute
	// maxStreamID bounds the member ID either end announces.
	maxStreamID = 256
)

// errStreamRefused: the leader took no stream; nothing was sent on it.
var errStreamRefused = errors.New("the leader takes no proposal stream")

// proposalStreams is a follower's stream to its leader, if it holds one.
type proposalStreams struct {
	mu  sync.Mutex
	cur *proposalStream
	// refusedAddr refused the stream; HTTP until refusedUntil.
	refusedAddr  string
	refusedUntil time.Time
}

// proposalStream is a follower's end of one stream.
type proposalStream struct {
	n    *Node
	addr string
	// leaderID is the leader's member ID, from its ack.
	leaderID string
	conn     net.Conn
	// ctx ends, with ErrLeaderLost as its cause, when this node's leader
	// changes (toLeader).
	ctx context.Context

	wmu sync.Mutex // serialises frames; held while one is written
	bw  *bufio.Writer

	mu      sync.Mutex
	err     error // set once the stream failed: no more batches
	pending []*streamBatch
	// idleSince is when pending last became empty.
	idleSince time.Time
}

// streamBatch is a batch written to the stream and not yet answered.
type streamBatch struct {
	props []*proposal
	// next is the first proposal without its answer (under the stream's mu).
	next     int
	answered chan struct{}
}

// sendProposalsStream sends a batch on this follower's stream and returns
// once each of its proposals has its answer. errStreamRefused, or
// ErrNoLeader from a dial that failed, mean nothing was sent and no
// proposal was answered.
func (n *Node) sendProposalsStream(batch []*proposal) error {
	// A stream found dead before the batch was written to it is replaced
	// once: its failure said nothing about this batch.
	for try := 0; ; try++ {
		s, err := n.proposalStream()
		if err != nil {
			return err
		}
		b, err := s.send(batch)
		if err == nil {
			<-b.answered
			return nil
		}
		if try > 0 {
			answerAll(batch, fmt.Errorf("forwarding to the leader: %w", ErrNoLeader))
			return nil
		}
	}
}

// proposalStream returns the stream to the current leader, opening it if
// this node holds none.
func (n *Node) proposalStream() (*proposalStream, error) {
	ps := &n.pstreams
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if s := ps.cur; s != nil {
		if s.usable() {
			return s, nil
		}
		s.fail(errors.New("proposal stream idle"))
		ps.cur = nil
	}
	addr, ctx, cancel := n.toLeader(context.Background())
	if addr == "" {
		cancel()
		return nil, ErrNoLeader
	}
	if addr == ps.refusedAddr && time.Now().Before(ps.refusedUntil) {
		cancel()
		return nil, errStreamRefused
	}
	conn, leaderID, err := n.openProposalStream(ctx, addr)
	if err != nil {
		cancel()
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, ErrNoLeader // the leader is gone
		}
		n.log.Info("the leader took no proposal stream; forwarding writes over HTTP", "leader", addr, "err", err)
		ps.refusedAddr, ps.refusedUntil = addr, time.Now().Add(streamRetry)
		return nil, errStreamRefused
	}
	s := &proposalStream{n: n, addr: addr, leaderID: leaderID, conn: conn, ctx: ctx, bw: bufio.NewWriter(conn), idleSince: time.Now()}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		select {
		case <-ctx.Done():
			s.fail(lostLeader(ctx, ErrLeaderLost))
		case <-n.stop:
			cancel()
			s.fail(ErrNoLeader)
		}
	}()
	go func() {
		defer n.wg.Done()
		defer cancel()
		s.readAnswers()
	}()
	ps.cur = s
	return s, nil
}

// openProposalStream dials addr and completes the handshake; it returns
// the leader's member ID.
func (n *Node) openProposalStream(ctx context.Context, addr string) (net.Conn, string, error) {
	dctx, cancel := context.WithTimeout(ctx, streamIOTimeout)
	defer cancel()
	conn, err := n.mux.dial(dctx, addr, protoProposals)
	if err != nil {
		return nil, "", err
	}
	_ = conn.SetDeadline(time.Now().Add(streamIOTimeout))
	if _, err := conn.Write(appendStreamID(nil, n.id)); err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("proposal stream hello: %w", err)
	}
	br := bufio.NewReader(conn)
	version, err := br.ReadByte()
	if err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("proposal stream: no answer to hello: %w", err)
	}
	if version != streamVersion {
		conn.Close()
		return nil, "", fmt.Errorf("proposal stream: leader speaks version %d, this member %d", version, streamVersion)
	}
	id, err := readStreamID(br)
	if err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("proposal stream ack: %w", err)
	}
	if br.Buffered() > 0 {
		conn.Close()
		return nil, "", errors.New("proposal stream: the leader sent more than its ack")
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, id, nil
}

// usable reports whether a batch may go on the stream: it has not failed
// and was not idle for streamIdle.
func (s *proposalStream) usable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err == nil && (len(s.pending) > 0 || time.Since(s.idleSince) < streamIdle)
}

// answerWait bounds the wait for the next answer while batches are
// pending: as long as a forwarded HTTP batch was given.
func (s *proposalStream) answerWait() time.Time {
	return time.Now().Add(10*time.Second + s.n.applyWait())
}

// fail ends the stream: batches written and not answered get err, as
// writes that may or may not be applied.
func (s *proposalStream) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	s.conn.Close()
	for _, b := range pending {
		answerAll(b.props[b.next:], fmt.Errorf("forwarding to the leader, the write may or may not be applied: %w", err))
		close(b.answered)
	}
}

// send writes batch as one frame. An error means the stream had failed
// before the frame was queued: nothing of the batch went out.
func (s *proposalStream) send(batch []*proposal) (*streamBatch, error) {
	var frame []byte
	frame = binary.AppendUvarint(frame, uint64(len(batch)))
	for _, p := range batch {
		frame = appendProposal(frame, p.data)
	}
	b := &streamBatch{props: batch, answered: make(chan struct{})}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil, s.err
	}
	// Queued before it is written, so the reader finds it for the answer.
	if len(s.pending) == 0 {
		_ = s.conn.SetReadDeadline(s.answerWait())
	}
	s.pending = append(s.pending, b)
	s.mu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(streamIOTimeout))
	if _, err := s.bw.Write(frame); err != nil {
		s.fail(err)
		return b, nil
	}
	if err := s.bw.Flush(); err != nil {
		s.fail(err)
	}
	return b, nil
}

// readAnswers hands out the leader's answers, batch by batch in the order
// they were written, until the stream fails. It reads while nothing is
// pending too, so a stream the leader closed fails at once, not under the
// next batch.
func (s *proposalStream) readAnswers() {
	br := bufio.NewReader(s.conn)
	for {
		if _, err := br.Peek(1); err != nil {
			s.fail(lostLeader(s.ctx, err))
			return
		}
		s.mu.Lock()
		if s.err != nil {
			s.mu.Unlock()
			return
		}
		if len(s.pending) == 0 {
			s.mu.Unlock()
			s.fail(errors.New("proposal stream: the leader answered no batch"))
			return
		}
		b := s.pending[0]
		s.mu.Unlock()
		for b.next < len(b.props) {
			a, err := readProposalAnswer(br)
			if err != nil {
				s.fail(lostLeader(s.ctx, err))
				return
			}
			s.mu.Lock()
			if s.err != nil { // failed meanwhile, and answered the rest
				s.mu.Unlock()
				return
			}
			b.props[b.next].done <- a
			b.next++
			s.mu.Unlock()
		}
		nt, err := readStreamNotice(br)
		if err != nil {
			s.fail(lostLeader(s.ctx, err))
			return
		}
		if nt.term != 0 {
			nt.leaderID, nt.leaderAddr = s.leaderID, s.addr
			s.n.streamNotice.offer(nt)
		}
		s.mu.Lock()
		if s.err != nil {
			s.mu.Unlock()
			return
		}
		s.pending = s.pending[1:]
		if len(s.pending) > 0 {
			_ = s.conn.SetReadDeadline(s.answerWait())
		} else {
			_ = s.conn.SetReadDeadline(time.Time{})
			s.idleSince = time.Now()
		}
		s.mu.Unlock()
		close(b.answered)
	}
}

// serveProposalStreams is the leader's side: it serves every stream the
// peer port hands over until the node stops.
func (n *Node) serveProposalStreams(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.serveProposalStream(c)
		}()
	}
}

// streamAnswer is a batch read from a stream, on its way to its answer.
type streamAnswer struct {
	futures []raft.ApplyFuture
}

// serveProposalStream reads a follower's batches and hands each to raft
// as it arrives; a writer answers them in the same order. Whatever fails
// closes the connection, and the follower counts every proposal not yet
// answered as unknown (may or may not be applied).
func (n *Node) serveProposalStream(c net.Conn) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-n.stop:
		case <-done:
		}
		c.Close()
	}()
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(streamIOTimeout))
	follower, err := readStreamID(br)
	if err != nil {
		n.log.Warn("proposal stream refused", "remote", c.RemoteAddr(), "err", err)
		return
	}
	if _, err := c.Write(appendStreamID([]byte{streamVersion}, n.id)); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	// A member's notices are tracked (commitNotices); an unknown ID
	// would cost a sender goroutine each, so it gets none.
	var notices *noticePeer
	if n.isMember(raft.ServerID(follower)) {
		notices = n.notices.peer(raft.ServerID(follower))
	}

	// Backpressure: while this many batches wait for their answers, the
	// follower's frames wait in the socket.
	queue := make(chan streamAnswer, 2*proposalsInFlight)
	written := make(chan struct{})
	go func() {
		defer close(written)
		n.writeStreamAnswers(c, queue, follower, notices)
	}()
	defer func() {
		close(queue)
		<-written
	}()
	for {
		_ = c.SetReadDeadline(time.Now().Add(streamIdleLeader))
		entries, err := readStreamBatch(br)
		if err != nil {
			var ne net.Error
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !(errors.As(err, &ne) && ne.Timeout()) {
				n.log.Warn("proposal stream closed", "follower", follower, "err", err)
			}
			return
		}
		queue <- streamAnswer{futures: n.applyProposals(entries)}
	}
}

// writeStreamAnswers answers the batches of queue in order. After a
// failed write it closes the connection and drains the queue.
func (n *Node) writeStreamAnswers(c net.Conn, queue <-chan streamAnswer, follower string, notices *noticePeer) {
	bw := bufio.NewWriter(c)
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	var broken bool
	for a := range queue {
		if broken {
			continue
		}
		out, last, err := n.answerProposals(a.futures)
		if err == nil {
			// The commit needed a majority, which need not count this
			// follower (in about half the writes under one client): until
			// it acknowledges holding the entry, raft there would refuse
			// the notice. The answer waits for that acknowledgement (the
			// follower cannot apply the entry before it either), a
			// heartbeat interval at most; then the leader sends the notice
			// once it comes (sendNotices). Without a notice, the follower
			// would learn the commit only with the next entries or after
			// CommitTimeout (50-100 ms stalls under one client).
			var inBand uint64
			if notices != nil && n.IsLeader() && last > 0 {
				if notices.match.Load() < last {
					wait.Reset(n.cfg.HeartbeatInterval)
					if !notices.waitMatch(last, wait.C, n.stop) {
						n.notifyCommit(raft.ServerID(follower), last)
						last = 0
					}
					wait.Stop() // no stale tick after Stop since Go 1.23
				}
				inBand = last
			}
			out = n.appendStreamNotice(out, inBand)
			_, err = bw.Write(out)
		}
		// Each answer leaves at once: one held back for the next batch's
		// would wait for that batch's commit.
		if err == nil {
			_ = c.SetWriteDeadline(time.Now().Add(streamIOTimeout))
			err = bw.Flush()
		}
		if err != nil {
			n.log.Warn("proposal stream: answering", "follower", follower, "err", err)
			broken = true
			c.Close()
		}
	}
}

// appendStreamID appends a member ID as readStreamID reads it.
func appendStreamID(b []byte, id string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(id))), id...)
}

// readStreamID reads the member ID an end announces.
func readStreamID(br *bufio.Reader) (string, error) {
	l, err := binary.ReadUvarint(br)
	if err != nil {
		return "", err
	}
	if l == 0 || l > maxStreamID {
		return "", fmt.Errorf("member ID of %d bytes", l)
	}
	id := make([]byte, l)
	if _, err := io.ReadFull(br, id); err != nil {
		return "", err
	}
	return string(id), nil
}

// readStreamBatch reads one batch frame.
func readStreamBatch(br *bufio.Reader) ([][]byte, error) {
	count, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, err
	}
	if count == 0 || count > maxProposalBatch {
		return nil, fmt.Errorf("batch of %d proposals", count)
	}
	entries := make([][]byte, 0, count)
	size := 0
	for range count {
		e, err := readProposal(br)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
		if size += len(e); size > maxProposalsBody {
			return nil, errors.New("proposal batch too large")
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// streamNotice is a commit notice from the leader: the entry at index,
// of term prevTerm, is committed in term.
type streamNotice struct {
	term, index, prevTerm uint64
	leaderID, leaderAddr  string
}

// appendStreamNotice appends the commit notice for index (0: none) to a
// batch's answers: as sendCommit would send it, while this node leads.
func (n *Node) appendStreamNotice(b []byte, index uint64) []byte {
	var term, prevTerm uint64
	if index > 0 {
		var err error
		if term, prevTerm, err = n.commitTerms(index); err != nil {
			term, prevTerm, index = 0, 0, 0
		}
	}
	b = binary.AppendUvarint(b, term)
	b = binary.AppendUvarint(b, index)
	return binary.AppendUvarint(b, prevTerm)
}

func readStreamNotice(br *bufio.Reader) (streamNotice, error) {
	var v [3]uint64
	for i := range v {
		x, err := binary.ReadUvarint(br)
		if err != nil {
			return streamNotice{}, err
		}
		v[i] = x
	}
	return streamNotice{term: v[0], index: v[1], prevTerm: v[2]}, nil
}

// streamNotices holds the newest commit notice for raft, coalesced.
type streamNotices struct {
	mu   sync.Mutex
	want streamNotice
	kick chan struct{}
	// accepted and refused count the notices raft took and refused.
	accepted, refused atomic.Uint64
}

func (s *streamNotices) offer(nt streamNotice) {
	s.mu.Lock()
	if nt.term > s.want.term || (nt.term == s.want.term && nt.index > s.want.index) {
		s.want = nt
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *streamNotices) newest() streamNotice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.want
}

// deliverNotices hands the stream's commit notices to raft, one at a
// time, as the AppendEntries the leader would have sent: raft accepts one
// only in the leader's current term and if this node's log holds the
// entry with the same term, and then commits through it.
func (n *Node) deliverNotices() {
	var done streamNotice
	for {
		select {
		case <-n.stop:
			return
		case <-n.streamNotice.kick:
		}
		nt := n.streamNotice.newest()
		if nt == done || nt.index <= n.fsm.applied.get() {
			continue // raft's own AppendEntries got there first
		}
		req := &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(nt.leaderID),
				Addr: n.trans.EncodePeer(raft.ServerID(nt.leaderID), raft.ServerAddress(nt.leaderAddr))},
			Term:         nt.term,
			PrevLogEntry: nt.index, PrevLogTerm: nt.prevTerm, LeaderCommitIndex: nt.index,
		}
		resp := make(chan raft.RPCResponse, 1)
		select {
		case n.trans.rpcs <- raft.RPC{Command: req, RespChan: resp}:
		case <-n.stop:
			return
		}
		select {
		case r := <-resp:
			if ae, ok := r.Response.(*raft.AppendEntriesResponse); ok && ae.Success && r.Error == nil {
				n.streamNotice.accepted.Add(1)
			} else {
				// Its log does not hold the entry yet, or the term moved
				// on: raft's own AppendEntries will tell it.
				n.streamNotice.refused.Add(1)
			}
		case <-n.stop:
			return
		}
		done = nt
	}
}

// isMember reports whether id is in raft's configuration.
func (n *Node) isMember(id raft.ServerID) bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == id {
			return true
		}
	}
	return false
}
