package cluster

// Requests forwarded to the leader end when it stops being the leader.
//
// A leader that dies without closing its connections (a power cut, a
// guest switched off) leaves a follower's pooled connection to it open:
// a request forwarded on it was never answered and waited as long as its
// client did (`pithctl list-units` on a follower hung for minutes after
// the leader was switched off, long after a new one was elected). Raft
// notices the silence within an election timeout and drops the leader;
// from then on the request has nobody left to answer it.

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// ErrLeaderLost: the leader a request was forwarded to stopped being this
// node's leader before it answered. A write may or may not have been
// applied; a read may be retried.
var ErrLeaderLost = errors.New("the leader stopped leading before it answered (a write may or may not have been applied; retry)")

// changeSignal broadcasts changes of a value (this node's view of the
// leader; what a follower acknowledged holding): changed returns a channel
// that the next bump closes.
type changeSignal struct {
	mu sync.Mutex
	ch chan struct{} // closed, and replaced, when the value changes
}

// changed returns a channel closed at the next change.
func (w *changeSignal) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// bump signals a change.
func (w *changeSignal) bump() {
	w.mu.Lock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
	w.mu.Unlock()
}

// watchLeader follows raft's leader observations until the node stops.
// The observer never blocks raft: an observation that finds the buffer
// full is dropped, but the one in the buffer bumps after it.
func (n *Node) watchLeader(r *raft.Raft) {
	obs := make(chan raft.Observation, 1)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(o)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer r.DeregisterObserver(o)
		for {
			select {
			case <-obs:
				n.leaderw.bump()
			case <-n.stop:
				return
			}
		}
	}()
}

// toLeader returns the leader's address and a context derived from parent
// that ends, with ErrLeaderLost as its cause, when this node's leader
// changes; addr is "" when there is no leader.
func (n *Node) toLeader(parent context.Context) (string, context.Context, context.CancelFunc) {
	var ch <-chan struct{}
	var addr raft.ServerAddress
	for {
		ch = n.leaderw.changed()
		addr, _ = n.raft.LeaderWithID()
		select {
		case <-ch:
			continue // changed while read: read both again
		default:
		}
		break
	}
	ctx, cancel := context.WithCancelCause(parent)
	go func() {
		for {
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
			// An observation can arrive after the leader it reports was
			// read (a follower that just learned the leader): the same
			// leader is no change. Read both again, as above.
			ch = n.leaderw.changed()
			if now, _ := n.raft.LeaderWithID(); now != addr {
				cancel(fmt.Errorf("leader %s: %w", addr, ErrLeaderLost))
				return
			}
		}
	}()
	return string(addr), ctx, func() { cancel(context.Canceled) }
}

// lostLeader is err, or the leader's loss when that is what ended ctx.
func lostLeader(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrLeaderLost) {
		return cause
	}
	return err
}
