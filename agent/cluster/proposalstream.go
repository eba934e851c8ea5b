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
// pipeline on it; a reader and a writer serve it at each end (the
// leader's in proposalserve.go).
//
// A follower answers its client once it applied the entry (read your
// writes); hashicorp/raft tells it the commit index only with the leader's
// next AppendEntries. So each answer carries the commit notice the leader
// would otherwise send as an AppendEntries of its own (readyourwrites.go):
// the follower hands it to its raft as if it came from the network, where
// raft checks it as any AppendEntries (term, and that the follower's log
// holds the entry with the same term), and the leader saves an RPC
// (streamnotice.go).
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
	"net"
	"sync"
	"time"
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
