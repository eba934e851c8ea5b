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
	c.mustPut("/k", "v")
	const clientWait = time.Minute
	var leader, f int
	var took time.Duration
	var st int
	var body []byte
	// An answer of 200 means the read never went to the paused member: on
	// a loaded machine (1 s election timeout) leadership can move between
	// finding the leader and pausing it, and the follower then answers or
	// forwards to the new leader. That attempt proves nothing, so it is
	// made again; a hang (the old behaviour) still fails the test, after
	// the client wait.
	for attempt := 1; ; attempt++ {
		leader = c.waitLeader()
		f = (leader + 1) % 3
		// A pooled connection from the follower to the leader, as in a
		// running cluster.
		if st, _ := c.quorumGet(f, "/k"); st != 200 {
			t.Fatalf("quorum read through %s: %d", c.members[f].name, st)
		}
		c.signal(leader, syscall.SIGSTOP)
		ctx, cancel := context.WithTimeout(context.Background(), clientWait)
		req, _ := http.NewRequestWithContext(ctx, "GET", c.members[f].clientURL+"/v2/keys/k?quorum=true", nil)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		took = time.Since(start)
		if err != nil {
			cancel()
			c.signal(leader, syscall.SIGCONT)
			t.Fatalf("forwarded read to the paused leader: no answer after %s: %v", took.Round(time.Millisecond), err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		st = resp.StatusCode
		t.Logf("attempt %d: forwarded read to the paused leader %s answered %d after %s: %s", attempt, c.members[leader].name, st, took.Round(time.Millisecond), strings.TrimSpace(string(body)))
		if st != 200 {
			break
		}
		c.signal(leader, syscall.SIGCONT)
		if attempt == 5 {
			t.Fatalf("in %d attempts the read never reached a paused leader (leadership moved before each pause)", attempt)
		}
	}
	defer c.signal(leader, syscall.SIGCONT)
	if !strings.Contains(string(body), "stopped leading") {
		t.Errorf("forwarded read to the paused leader: %d %s, want an error naming the lost leader", st, body)
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
