package cluster_test

import (
	"context"
	"encoding/json"
	"net/url"
	"syscall"
	"testing"
	"time"
)

// TestDiscovery bootstraps members from a discovery URL served by the same
// code as `pith discovery serve`: the first three found the cluster, the
// fourth finds it full and joins as a raft non-voter (--max-voters 3),
// serving reads locally and forwarding writes.
func TestDiscovery(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	token := discoveryToken(t, 3)
	c := newCluster(t, 4)
	c.initial = ""
	for _, m := range c.members {
		m.extra = []string{"--discovery", token, "--max-voters", "3"}
	}
	for i := 0; i < 3; i++ {
		c.start(i, "new")
	}
	c.waitLeader(3)
	c.start(3, "new")
	c.waitLeader()
	c.mustPut("/via-discovery", "ok")
	// The late member serves the key locally once replicated.
	for attempt := 0; ; attempt++ {
		st, r, _ := kvDo(context.Background(), c.members[3].clientURL, "GET", "/via-discovery", nil)
		if st == 200 && r.Node.Value == "ok" {
			break
		}
		if attempt > 300 {
			t.Fatalf("late member never served the key: %d", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, r, err := kvDo(context.Background(), c.members[3].clientURL, "PUT", "/from-learner", url.Values{"value": {"w"}})
	if err != nil || st != 201 || r.Node.Value != "w" {
		t.Fatalf("write through the non-voter: %d %+v %v", st, r, err)
	}
	leader := c.waitLeader()
	resp, err := httpc.Get(c.members[leader].clientURL + "/v2/stats/leader")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ls struct {
		Followers map[string]struct {
			Suffrage string `json:"suffrage"`
		} `json:"followers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ls); err != nil {
		t.Fatal(err)
	}
	late := memberID(t, c, c.members[3].name)
	if got := ls.Followers[late].Suffrage; got != "Nonvoter" {
		t.Fatalf("late member's suffrage %q, want Nonvoter (followers: %+v)", got, ls.Followers)
	}
	if n := len(ls.Followers); n != 3 {
		t.Fatalf("%d followers, want 3", n)
	}

	// A founder killed and restarted with the same --discovery finds its
	// data dir and rejoins from it, instead of asking to join a full
	// cluster as a new member; the member list keeps four entries.
	c.signal(0, syscall.SIGKILL)
	c.mustPut("/while-down", "x")
	c.start(0, "new")
	c.waitLeader()
	if st, r := c.quorumGet(0, "/while-down"); st != 200 || r.Node.Value != "x" {
		t.Fatalf("restarted founder: %d %+v", st, r)
	}
	// Its own member list (local state) fills in as it catches up.
	for attempt := 0; ; attempt++ {
		var ml struct {
			Members []struct{ Name string } `json:"members"`
		}
		resp, err := httpc.Get(c.members[0].clientURL + "/v2/members")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&ml)
			resp.Body.Close()
		}
		if err == nil && len(ml.Members) == 4 {
			break
		}
		if attempt == 300 || len(ml.Members) > 4 {
			t.Fatalf("members after the founder's restart: %+v %v", ml, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
