package cluster

// Commit notices on proposal streams (proposalstream.go): the leader puts
// one in each answer, the follower hands it to its raft.

import (
	"bufio"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

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
		req := n.commitNotice(raft.ServerID(nt.leaderID), raft.ServerAddress(nt.leaderAddr), nt.term, nt.index, nt.prevTerm)
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
