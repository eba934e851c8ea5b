package cluster_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

// fleetReadYourWrites (in TestReadYourWrites, on its cluster): fleet's
// API keeps etcd's read-your-writes as the keys do. Units created (PUT with options) and set (PUT of a new
// desiredState) through a follower are read back at once, from that same
// follower, as fleetctl pinned to one endpoint would: every read must show
// the write.
func fleetReadYourWrites(t *testing.T, c *testCluster, f int) {
	base := c.members[f].clientURL + "/fleet/v1/units/"
	put := func(name string, body any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPut, base+name, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatalf("PUT %s through follower %s: %v", name, c.members[f].name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 && resp.StatusCode != 204 {
			t.Fatalf("PUT %s through follower %s: %s", name, c.members[f].name, resp.Status)
		}
	}
	desired := func(name string) string {
		t.Helper()
		resp, err := httpc.Get(base + name)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var u struct {
			DesiredState string `json:"desiredState"`
		}
		if resp.StatusCode != 200 {
			return resp.Status
		}
		if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
			t.Fatal(err)
		}
		return u.DesiredState
	}
	const rounds = 40
	misses := 0
	for i := 0; i < rounds; i++ {
		name := fmt.Sprintf("ryw%d.service", i)
		steps := []struct {
			body any
			want string
		}{
			{map[string]any{"desiredState": "inactive", "options": []map[string]string{{"section": "Service", "name": "ExecStart", "value": fmt.Sprintf("/bin/sleep %d", 1000+i)}}}, "inactive"},
			{map[string]any{"desiredState": "loaded"}, "loaded"},
			{map[string]any{"desiredState": "inactive"}, "inactive"},
		}
		for k, s := range steps {
			put(name, s.body)
			if got := desired(name); got != s.want {
				misses++
				if misses <= 3 {
					t.Errorf("round %d step %d: %s read on %s right after the write there: %q, want %q", i, k, name, c.members[f].name, got, s.want)
				}
			}
		}
	}
	if misses > 0 {
		t.Fatalf("%d of %d fleet reads through the follower that took the write missed it", misses, 3*rounds)
	}
}
