package cluster

// Writes taken by a follower.
//
// A follower does with a write what an etcd follower does: it hands the
// command to the leader, learns the log index the leader gave it, applies
// the log that far itself and answers with its own result (the state
// machines are deterministic, so every member computes the same one).
// Forwarding the client's HTTP request instead (Node.Forward) cost the
// leader one HTTP exchange per write, the largest part of its CPU under
// load. Here concurrent proposals travel together: one frame on the
// follower's proposal stream (proposalstream.go), or one peer-port HTTP
// request to a leader that takes no stream, carries a batch, and a few
// batches are in flight at once.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

const (
	proposalsPath = "/pith/cluster/proposals"
	// maxProposalBatch bounds the entries of one forwarded batch (the
	// leader appends up to MaxAppendEntries = 512 per log write).
	maxProposalBatch = 512
	// proposalsInFlight bounds a follower's batches in flight; while they
	// are, new proposals queue and leave together.
	proposalsInFlight = 4
	// maxProposalsBody bounds a batch request on the leader.
	maxProposalsBody = 64 << 20
)

// Answer codes of a batch, one per entry.
const (
	proposalApplied    byte = 0 // followed by the entry's log index
	proposalNotApplied byte = 1 // followed by a message: never reached the log
	proposalUnknown    byte = 2 // followed by a message: may or may not commit
)

// ErrLeaderTooOld: the leader runs a release that takes no forwarded
// commands (a rolling update is half way); nothing reached the log, and
// the caller forwards the client's request whole instead (Node.Forward).
var ErrLeaderTooOld = errors.New("cluster: the leader's release takes no forwarded commands")

// ErrResultGone: the entry is applied, but so long ago that its result is
// no longer kept.
var ErrResultGone = errors.New("cluster: the write was applied, but its result is no longer kept on this member")

type proposal struct {
	data []byte // namespace byte and command
	done chan proposalAnswer
}

type proposalAnswer struct {
	index uint64
	err   error
}

// results keeps the results of the last entries applied here, for the
// proposals this member forwarded (the answer from the leader may come
// after the entry was applied).
type results struct {
	mu    sync.Mutex
	index [4096]uint64
	res   [4096]any
}

func (r *results) put(index uint64, res any) {
	i := index % uint64(len(r.index))
	r.mu.Lock()
	r.index[i], r.res[i] = index, res
	r.mu.Unlock()
}

func (r *results) get(index uint64) (any, bool) {
	i := index % uint64(len(r.index))
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.index[i] != index {
		return nil, false
	}
	return r.res[i], true
}

// proposeThroughLeader forwards one command from a follower and returns
// this member's own result once it applied the entry.
func (n *Node) proposeThroughLeader(ctx context.Context, ns Namespace, cmd []byte) (any, uint64, error) {
	p := &proposal{data: append([]byte{byte(ns)}, cmd...), done: make(chan proposalAnswer, 1)}
	select {
	case n.proposals <- p:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("%w: %v", ErrNoLeader, ctx.Err())
	case <-n.stop:
		return nil, 0, ErrNoLeader
	}
	var a proposalAnswer
	select {
	case a = <-p.done:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("no answer from the leader, the write may or may not be applied: %w", ctx.Err())
	}
	if a.err != nil {
		return nil, 0, a.err
	}
	wctx, cancel := context.WithTimeout(ctx, n.applyWait())
	defer cancel()
	if err := n.fsm.applied.wait(wctx, a.index); err != nil {
		return nil, 0, fmt.Errorf("the leader applied the write at log index %d but this member applied only %d: %v", a.index, n.fsm.applied.get(), err)
	}
	res, ok := n.fsm.results.get(a.index)
	if !ok {
		return nil, a.index, ErrResultGone
	}
	return res, a.index, nil
}

// sendProposalsLoop groups queued proposals into batches for the leader.
func (n *Node) sendProposalsLoop() {
	sem := make(chan struct{}, proposalsInFlight)
	for {
		select {
		case sem <- struct{}{}:
		case <-n.stop:
			return
		}
		var batch []*proposal
		select {
		case p := <-n.proposals:
			batch = append(batch, p)
		case <-n.stop:
			return
		}
	more:
		for len(batch) < maxProposalBatch {
			select {
			case p := <-n.proposals:
				batch = append(batch, p)
			default:
				break more
			}
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer func() { <-sem }()
			n.sendProposals(batch)
		}()
	}
}

func answerAll(batch []*proposal, err error) {
	for _, p := range batch {
		p.done <- proposalAnswer{err: err}
	}
}

// sendProposals sends a batch to the leader on this node's proposal
// stream, or over HTTP to a leader that takes no stream.
func (n *Node) sendProposals(batch []*proposal) {
	err := n.sendProposalsStream(batch)
	if err == nil {
		return
	}
	if !errors.Is(err, errStreamRefused) {
		answerAll(batch, err)
		return
	}
	addr, ctx, cancel := n.toLeader(context.Background())
	defer cancel()
	if addr == "" {
		answerAll(batch, ErrNoLeader)
		return
	}
	n.postProposals(ctx, "http://"+addr, batch)
}

// postProposals sends a batch to the leader at base and hands out its
// answers; ctx ends when that leader is lost (toLeader).
func (n *Node) postProposals(ctx context.Context, base string, batch []*proposal) {
	var body []byte
	for _, p := range batch {
		body = appendProposal(body, p.data)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second+n.applyWait())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+proposalsPath, bytes.NewReader(body))
	if err != nil {
		answerAll(batch, err)
		return
	}
	req.Header.Set(ForwardedHeader, n.id)
	resp, err := n.fwd.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			answerAll(batch, ErrNoLeader) // never left: the leader is gone
			return
		}
		answerAll(batch, fmt.Errorf("forwarding to the leader, the write may or may not be applied: %w", lostLeader(ctx, err)))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		answerAll(batch, ErrLeaderTooOld)
		return
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode == http.StatusServiceUnavailable {
			// Refused whole, before anything reached the log.
			answerAll(batch, fmt.Errorf("%w: %s", ErrNoLeader, bytes.TrimSpace(msg)))
			return
		}
		answerAll(batch, fmt.Errorf("leader: %d %s", resp.StatusCode, bytes.TrimSpace(msg)))
		return
	}
	br := bufio.NewReader(io.LimitReader(resp.Body, maxProposalsBody))
	for i, p := range batch {
		a, err := readProposalAnswer(br)
		if err != nil {
			answerAll(batch[i:], fmt.Errorf("reading the leader's answer, the write may or may not be applied: %w", lostLeader(ctx, err)))
			return
		}
		p.done <- a
	}
}

func readProposalAnswer(br *bufio.Reader) (proposalAnswer, error) {
	code, err := br.ReadByte()
	if err != nil {
		return proposalAnswer{}, err
	}
	v, err := binary.ReadUvarint(br)
	if err != nil {
		return proposalAnswer{}, err
	}
	if code == proposalApplied {
		return proposalAnswer{index: v}, nil
	}
	if v > 4096 {
		return proposalAnswer{}, errors.New("answer message too long")
	}
	msg := make([]byte, v)
	if _, err := io.ReadFull(br, msg); err != nil {
		return proposalAnswer{}, err
	}
	if code == proposalNotApplied {
		return proposalAnswer{err: fmt.Errorf("%w: %s", ErrNoLeader, msg)}, nil
	}
	return proposalAnswer{err: fmt.Errorf("leader: %s (the write may or may not be applied)", msg)}, nil
}

// handleProposals is the leader's side over HTTP (followers of earlier
// releases, and any follower whose leader took no stream): append every
// entry of the batch, wait for each to be applied here, answer each with
// its index.
func (n *Node) handleProposals(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, "POST") {
		return
	}
	br := bufio.NewReader(io.LimitReader(r.Body, maxProposalsBody))
	var entries [][]byte
	for size := 0; ; {
		e, err := readProposal(br, maxProposalsBody-size)
		if err == io.EOF {
			break
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		size += len(e)
		entries = append(entries, e)
	}
	if n.raft.State() != raft.Leader {
		http.Error(w, ErrNotLeader.Error(), http.StatusServiceUnavailable)
		return
	}
	out, _, err := n.answerProposals(n.applyProposals(entries))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(out)
}

// readProposal reads one entry of a batch: its length, then the namespace
// byte and command. io.EOF: no entry began. A length over room (what is
// left of the batch's bound) is refused before anything is allocated.
func readProposal(br *bufio.Reader, room int) ([]byte, error) {
	l, err := binary.ReadUvarint(br)
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil || l == 0 {
		return nil, errors.New("malformed proposal batch")
	}
	if l > uint64(room) {
		return nil, errors.New("proposal batch too large")
	}
	e := make([]byte, l)
	if _, err := io.ReadFull(br, e); err != nil {
		return nil, errors.New("truncated proposal batch")
	}
	// The KV and the membership are proposed this way; the scheduler
	// writes through its own API, checked on the leader.
	if ns := Namespace(e[0]); ns != NamespaceKV && ns != NamespaceMembers {
		return nil, fmt.Errorf("namespace %d not proposable over the peer port", ns)
	}
	return e, nil
}

// appendProposal writes one entry of a batch as readProposal reads it.
func appendProposal(b []byte, data []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(data))), data...)
}

// applyProposals hands a batch's entries to raft, in order. On a node
// that does not lead, every future fails with raft.ErrNotLeader at once.
func (n *Node) applyProposals(entries [][]byte) []raft.ApplyFuture {
	futures := make([]raft.ApplyFuture, len(entries))
	for i, e := range entries {
		futures[i] = n.raft.Apply(e, 10*time.Second)
	}
	return futures
}

// answerProposals waits for a batch's entries and encodes one answer for
// each, as readProposalAnswer reads them, and returns the highest index
// applied. It returns once the applied entries are durable here too
// (fsm.durable), as Propose does.
func (n *Node) answerProposals(futures []raft.ApplyFuture) ([]byte, uint64, error) {
	var out []byte
	var last uint64
	for _, f := range futures {
		err := f.Error()
		switch {
		case err == nil:
			out = append(out, proposalApplied)
			out = binary.AppendUvarint(out, f.Index())
			last = max(last, f.Index())
			continue
		case errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrEnqueueTimeout):
			out = append(out, proposalNotApplied)
		default:
			out = append(out, proposalUnknown)
		}
		msg := err.Error()
		out = binary.AppendUvarint(out, uint64(len(msg)))
		out = append(out, msg...)
	}
	if err := n.logs.sync.waitDurable(last, n.stop); err != nil {
		return nil, 0, err
	}
	return out, last, nil
}
