package cluster_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestLeaderStats reads /v2/stats/leader from a real 3-member cluster:
// the leader lists both followers with etcd v2's latency and counts
// fields, filled from its RPCs to them; a follower answers 403 as etcd.
func TestLeaderStats(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll()
	leader := c.waitLeader()
	c.mustPut("/stats", "x")
	type follower struct {
		Latency struct {
			Current, Average, StandardDeviation, Minimum, Maximum *float64
		} `json:"latency"`
		Counts struct {
			Fail, Success *uint64
		} `json:"counts"`
	}
	var ls struct {
		Leader    string              `json:"leader"`
		Followers map[string]follower `json:"followers"`
	}
	self, err := c.selfStats(leader)
	if err != nil {
		t.Fatal(err)
	}
	// Heartbeats go out every tenth of the election timeout: poll until
	// each follower has a few round trips (bounded by attempts).
	for attempt := 0; ; attempt++ {
		resp, err := httpc.Get(c.members[leader].clientURL + "/v2/stats/leader")
		if err != nil {
			t.Fatal(err)
		}
		ls.Followers = nil
		err = json.NewDecoder(resp.Body).Decode(&ls)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stats/leader: %d %v", resp.StatusCode, err)
		}
		ready := len(ls.Followers) == 2
		for _, f := range ls.Followers {
			ready = ready && f.Counts.Success != nil && *f.Counts.Success >= 3
		}
		if ready {
			break
		}
		if attempt == 300 {
			t.Fatalf("followers never showed 3 successful RPCs: %+v", ls)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ls.Leader != self.ID {
		t.Errorf("leader %q, want %q", ls.Leader, self.ID)
	}
	for id, f := range ls.Followers {
		l := f.Latency
		if id == self.ID {
			t.Errorf("the leader lists itself as a follower")
		}
		if l.Current == nil || l.Average == nil || l.StandardDeviation == nil || l.Minimum == nil || l.Maximum == nil || f.Counts.Fail == nil {
			t.Fatalf("follower %s lacks a field: %+v", id, f)
		}
		if !(*l.Minimum > 0 && *l.Minimum <= *l.Average && *l.Average <= *l.Maximum && *l.Minimum <= *l.Current && *l.Current <= *l.Maximum && *l.StandardDeviation >= 0) {
			t.Errorf("follower %s: inconsistent latency min %v avg %v max %v current %v sd %v", id, *l.Minimum, *l.Average, *l.Maximum, *l.Current, *l.StandardDeviation)
		}
	}
	resp, err := httpc.Get(c.members[(leader+1)%3].clientURL + "/v2/stats/leader")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("stats/leader on a follower: %d, want 403", resp.StatusCode)
	}
}
