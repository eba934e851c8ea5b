package cluster_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestForwardEndsWhenLeaderLost pauses the leader (SIGSTOP: its
// connections stay open and nothing answers, as when a machine is
// switched off) right after a follower forwarded to it, then forwards a
// quorum read through that follower: the read must end once the
// follower's raft drops the silent leader, saying so, not wait for its
// client (it hung for minutes before), and the next read must reach the
// leader the others elected.
func TestForwardEndsWhenLeaderLost(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test: builds and runs pithd (run without -short)")
	}
	c := newCluster(t, 3)
	c.startAll()
	leader := c.waitLeader()
	f := (leader + 1) % 3
	c.mustPut("/k", "v")
	// A pooled connection from the follower to the leader, as in a
	// running cluster.
	if st, _ := c.quorumGet(f, "/k"); st != 200 {
		t.Fatalf("quorum read through %s: %d", c.members[f].name, st)
	}
	c.signal(leader, syscall.SIGSTOP)
	defer c.signal(leader, syscall.SIGCONT)

	const clientWait = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), clientWait)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", c.members[f].clientURL+"/v2/keys/k?quorum=true", nil)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("forwarded read to the paused leader: no answer after %s: %v", took.Round(time.Millisecond), err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("forwarded read to the paused leader answered %d after %s: %s", resp.StatusCode, took.Round(time.Millisecond), strings.TrimSpace(string(body)))
	if resp.StatusCode == 200 || !strings.Contains(string(body), "stopped leading") {
		t.Errorf("forwarded read to the paused leader: %d %s, want an error naming the lost leader", resp.StatusCode, body)
	}
	// The election timeout is 1 s: raft drops the leader within two.
	if took > 15*time.Second {
		t.Errorf("forwarded read ended %s after the leader paused, want within a few election timeouts", took.Round(time.Millisecond))
	}
	next := c.waitLeader(leader)
	if st, r := c.quorumGet(f, "/k"); st != 200 || r.Node.Value != "v" {
		t.Fatalf("quorum read through %s once %s leads: %d %+v", c.members[f].name, c.members[next].name, st, r)
	}
}
