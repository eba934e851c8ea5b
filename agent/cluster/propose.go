package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
)

// Propose appends a command for namespace ns and waits until this node
// applied it. Only the leader can propose (ErrNotLeader otherwise).
func (n *Node) Propose(ctx context.Context, ns Namespace, cmd []byte) (any, uint64, error) {
	if n.raft.State() != raft.Leader {
		return nil, 0, ErrNotLeader
	}
	data := make([]byte, 1+len(cmd))
	data[0] = byte(ns)
	copy(data[1:], cmd)
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return nil, 0, ErrNotLeader
		}
		return nil, 0, err
	}
	// Committed means fsynced on a quorum counting this leader, whose own
	// fsync runs beside replication: wait for it before acknowledging.
	if err := n.logs.sync.waitDurable(f.Index(), n.stop); err != nil {
		return nil, 0, err
	}
	return f.Response(), f.Index(), nil
}

// ProposeAnywhere proposes on the leader, through it when this node
// follows (forward.go): either way it returns this node's own result once
// this node applied the entry. A leader of an earlier release takes the
// membership's commands one by one (their result is not returned), and
// no others (ErrLeaderTooOld).
func (n *Node) ProposeAnywhere(ctx context.Context, ns Namespace, cmd []byte) (any, uint64, error) {
	res, idx, err := n.Propose(ctx, ns, cmd)
	if !errors.Is(err, ErrNotLeader) {
		return res, idx, err
	}
	res, idx, err = n.proposeThroughLeader(ctx, ns, cmd)
	if errors.Is(err, ErrLeaderTooOld) && ns == NamespaceMembers {
		return nil, 0, n.proposeOne(ctx, ns, cmd)
	}
	return res, idx, err
}

// proposeOne is how earlier releases forwarded a membership command.
func (n *Node) proposeOne(ctx context.Context, ns Namespace, cmd []byte) error {
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return ErrNoLeader
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+string(addr)+"/pith/cluster/propose", bytes.NewReader(append([]byte{byte(ns)}, cmd...)))
	if err != nil {
		return err
	}
	req.Header.Set(ForwardedHeader, n.id)
	resp, err := n.fwd.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("leader: %s", bytes.TrimSpace(body))
	}
	return n.awaitAnswer(ctx, resp.Header)
}

// IsLeader reports whether this node leads now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's member ID, or "".
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// LinearizableRead returns once local state machines reflect every write
// acknowledged before the call; only on the leader (ErrNotLeader).
func (n *Node) LinearizableRead(ctx context.Context) error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	for n.readyTerm.Load() != n.raft.CurrentTerm() {
		select {
		case <-ctx.Done():
			return ErrNoLeader
		case <-time.After(10 * time.Millisecond):
		}
		if n.raft.State() != raft.Leader {
			return ErrNotLeader
		}
	}
	// Confirms no newer leader exists: then every acknowledged write was
	// applied here (a leader applies before it acknowledges).
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return ErrNotLeader
	}
	// Serve only state whose entries are on this leader's disk too.
	return n.logs.sync.waitDurable(n.raft.AppliedIndex(), n.stop)
}
