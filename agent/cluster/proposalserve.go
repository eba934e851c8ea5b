package cluster

// The leader's end of proposal streams (proposalstream.go).

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

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
	if _, ok, _ := n.raftServer(raft.ServerID(follower)); ok {
		notices = n.notices.peer(raft.ServerID(follower))
	}

	// Backpressure: while this many batches wait for their answers, the
	// follower's frames wait in the socket.
	queue := make(chan []raft.ApplyFuture, 2*proposalsInFlight)
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
		queue <- n.applyProposals(entries)
	}
}

// writeStreamAnswers answers the batches of queue in order. After a
// failed write it closes the connection and drains the queue.
func (n *Node) writeStreamAnswers(c net.Conn, queue <-chan []raft.ApplyFuture, follower string, notices *noticePeer) {
	bw := bufio.NewWriter(c)
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	var broken bool
	for futures := range queue {
		if broken {
			continue
		}
		out, last, err := n.answerProposals(futures)
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
		e, err := readProposal(br, maxProposalsBody-size)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
		size += len(e)
		entries = append(entries, e)
	}
	return entries, nil
}
