package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// leaderLoop runs the leader's duties for as long as it leads.
func (n *Node) leaderLoop() {
	stopLead := context.CancelFunc(func() {})
	defer func() { stopLead() }()
	for {
		select {
		case <-n.stop:
			return
		case isLeader := <-n.raft.LeaderCh():
			stopLead()
			n.readyTerm.Store(0)
			if isLeader {
				ctx, cancel := context.WithCancel(context.Background())
				stopLead = cancel
				go n.lead(ctx)
			}
		}
	}
}

func (n *Node) lead(ctx context.Context) {
	term := n.raft.CurrentTerm()
	start := time.Now()
	// The barrier makes this leader apply every entry committed by earlier
	// leaders before it serves linearizable reads or acts on state.
	for {
		if err := n.raft.Barrier(n.cfg.ElectionTimeout * 5).Error(); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(n.cfg.HeartbeatInterval):
		}
	}
	// The barrier is this term's entry: every entry from it on is too.
	n.termStart.Store(n.raft.LastIndex())
	n.readyTerm.Store(term)
	n.log.Info("leading: entries of earlier terms applied, leader duties start", "term", term, "barrier", time.Since(start).Round(time.Millisecond))
	if n.members.clusterIDValue() == "" {
		var ids []string
		var ms []*Member
		for _, m := range n.cfg.InitialCluster {
			id := MemberID(m.PeerURLs, n.cfg.Token)
			ids = append(ids, id)
			ms = append(ms, &Member{ID: id, Name: m.Name, PeerURLs: m.PeerURLs})
		}
		b, _ := json.Marshal(memberCmd{Op: "init", ClusterID: ClusterID(ids, n.cfg.Token), Token: n.cfg.Token, Members: ms})
		if _, _, err := n.Propose(ctx, NamespaceMembers, b); err != nil {
			n.log.Warn("record initial members", "err", err)
		}
	}
	for _, h := range n.leaderHooks {
		go h(ctx)
	}
	n.balanceVoters(ctx)
}

// balanceVoters keeps up to MaxVoters voters by promoting non-voters when a
// voter was removed.
func (n *Node) balanceVoters(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f := n.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		voters := 0
		var non []raft.Server
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters++
			} else {
				non = append(non, s)
			}
		}
		if voters < n.cfg.MaxVoters && len(non) > 0 {
			sort.Slice(non, func(i, j int) bool { return non[i].ID < non[j].ID })
			s := non[0]
			if err := n.raft.AddVoter(s.ID, s.Address, f.Index(), 5*time.Second).Error(); err != nil {
				n.log.Warn("promote non-voter", "id", s.ID, "err", err)
			} else {
				n.log.Info("promoted non-voter", "id", s.ID)
			}
		}
	}
}

// publishLoop records this node's name and client URLs in the members
// namespace (through the leader) until they are there.
func (n *Node) publishLoop() {
	for {
		if m := n.members.get(n.id); m != nil && m.Name == n.cfg.Name && slices.Equal(m.ClientURLs, n.cfg.ClientURLs) {
			return
		}
		if n.members.get(n.id) != nil {
			if err := n.publish(); err != nil {
				n.log.Debug("publish member attributes", "err", err)
			}
		}
		select {
		case <-n.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (n *Node) publish() error {
	b, _ := json.Marshal(memberCmd{Op: "publish", Members: []*Member{{ID: n.id, Name: n.cfg.Name, ClientURLs: n.cfg.ClientURLs}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := n.ProposeAnywhere(ctx, NamespaceMembers, b)
	return err
}
