package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/pith-os/pith/internal/poll"
)

// TestStatsLeaderAppliedConfiguration: /v2/stats/leader lists the
// followers of the configuration the leader applied, not one appended and
// not yet committed. A single-member cluster adds a voter that never
// answers: the change is raft's latest configuration at once but cannot
// commit (it needs both voters), so the stats must still list no follower,
// while a voter whose addition committed is listed.
func TestStatsLeaderAppliedConfiguration(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	peer := "http://" + addr
	n, err := New(Config{Name: "n1", DataDir: t.TempDir(), ListenPeer: addr, PeerURLs: []string{peer},
		InitialCluster: []InitialMember{{Name: "n1", PeerURLs: []string{peer}}}, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(http.NotFoundHandler()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := poll.Until(ctx, "n1 leading", 20*time.Millisecond, func() (bool, string) {
		return n.IsLeader(), n.raft.State().String()
	}, nil); err != nil {
		t.Fatal(err)
	}
	followers := func() map[string]any {
		t.Helper()
		rec := httptest.NewRecorder()
		n.handleStatsLeader(rec, httptest.NewRequest("GET", "/v2/stats/leader", nil))
		var ls struct {
			Followers map[string]any `json:"followers"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &ls); err != nil || rec.Code != 200 {
			t.Fatalf("stats/leader: %d %v %s", rec.Code, err, rec.Body)
		}
		return ls.Followers
	}
	if f := followers(); len(f) != 0 {
		t.Fatalf("single member: followers %v, want none", f)
	}

	// Committed: a non-voter needs no acknowledgement of its own.
	if err := n.raft.AddNonvoter("learner", "127.0.0.1:1", 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if f := followers(); len(f) != 1 || f["learner"] == nil {
		t.Fatalf("followers %v: want the committed learner", f)
	}
	// Committed at once too: hashicorp/raft counts the leader's write
	// toward the old configuration (this member alone). The next voter
	// then needs one of two voters that never answers: appended, in raft's
	// latest configuration, never committed. (The leader soon steps down,
	// its lease lost, and the handler answers 403: check the configuration
	// it lists directly.)
	if err := n.raft.AddVoter("ghost", "127.0.0.1:2", 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	n.raft.AddVoter("ghost2", "127.0.0.1:3", 0, 0)
	if _, err := poll.Until(ctx, "ghost2 in raft's latest configuration", 20*time.Millisecond, func() (bool, string) {
		f := n.raft.GetConfiguration()
		return f.Error() == nil && len(f.Configuration().Servers) == 4, fmt.Sprint(f.Configuration().Servers)
	}, nil); err != nil {
		t.Fatal(err)
	}
	c, err := n.appliedConfiguration()
	if err != nil {
		t.Fatal(err)
	}
	var ids []raft.ServerID
	for _, s := range c.Servers {
		ids = append(ids, s.ID)
	}
	if len(ids) != 3 || ids[1] != "learner" || ids[2] != "ghost" {
		t.Errorf("applied configuration %v: want this member, the learner and ghost (committed), not the uncommitted ghost2", ids)
	}
}
