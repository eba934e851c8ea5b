package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"testing"

	"github.com/pith-os/pith/internal/pithdtest"
)

// TestReadYourWrites writes through a follower and reads at once from that
// same follower, plain (not quorum) reads, as etcd's v2 client does when it
// pins one member: every read must see the write. Every tenth round also
// starts a watch on the other follower at the write's index, which must
// deliver that very write. Before followers waited to apply the leader's
// answer, nearly every read missed. Then fleet units written through the
// follower read back there at once (fleetReadYourWrites), and member
// additions and removals through it show in its own member list at once.
func TestReadYourWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll()
	leader := c.waitLeader()
	f, other := (leader+1)%3, (leader+2)%3
	ctx := context.Background()
	const rounds = 300
	misses := 0
	for i := 0; i < rounds; i++ {
		key := fmt.Sprintf("/ryw/%d", i%7)
		val := strconv.Itoa(i)
		st, w, err := kvDo(ctx, c.members[f].clientURL, "PUT", key, url.Values{"value": {val}})
		if err != nil || (st != 200 && st != 201) {
			t.Fatalf("round %d: put through follower %s: %d %+v %v", i, c.members[f].name, st, w, err)
		}
		st, r, err := kvDo(ctx, c.members[f].clientURL, "GET", key, nil)
		if err != nil || st != 200 || r.Node.Value != val {
			misses++
			if misses <= 3 {
				t.Errorf("round %d: read after write on %s: %d %+v %v (want value %s)", i, c.members[f].name, st, r, err, val)
			}
		}
		if i%10 == 0 {
			idx := strconv.FormatUint(w.Node.ModifiedIndex, 10)
			st, ev, err := kvDo(ctx, c.members[other].clientURL, "GET", key, url.Values{"wait": {"true"}, "waitIndex": {idx}})
			if err != nil || st != 200 || ev.Node.Value != val || ev.Node.ModifiedIndex != w.Node.ModifiedIndex {
				t.Errorf("round %d: watch on %s from index %s: %d %+v %v (want the write of %s)", i, c.members[other].name, idx, st, ev, err, val)
			}
		}
	}
	if misses > 0 {
		t.Fatalf("%d of %d reads through the follower that took the write missed it", misses, rounds)
	}
	// Fleet's API through the same follower, on the same cluster.
	t.Run("fleet", func(t *testing.T) { fleetReadYourWrites(t, c, f) })
	// Member changes through the same follower (forwarded whole to the
	// leader): the follower's own list shows each at once.
	base := c.members[f].clientURL
	listed := func(id string) bool {
		resp, err := httpc.Get(base + "/v2/members")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ms struct{ Members []struct{ ID string } }
		if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil {
			t.Fatal(err)
		}
		for _, m := range ms.Members {
			if m.ID == id {
				return true
			}
		}
		return false
	}
	for i := 0; i < 10; i++ {
		st, body := postMember(t, base, fmt.Sprintf("http://127.0.0.1:%d", pithdtest.FreePort(t)))
		var m struct{ ID string }
		if st != 201 || json.Unmarshal([]byte(body), &m) != nil || m.ID == "" {
			t.Fatalf("member add through %s: %d %s", c.members[f].name, st, body)
		}
		if !listed(m.ID) {
			t.Errorf("round %d: member %s added through %s is not in its list", i, m.ID, c.members[f].name)
		}
		if st := deleteMember(t, base, m.ID); st != 204 {
			t.Fatalf("member remove through %s: %d", c.members[f].name, st)
		}
		if listed(m.ID) {
			t.Errorf("round %d: member %s removed through %s is still in its list", i, m.ID, c.members[f].name)
		}
	}
}
