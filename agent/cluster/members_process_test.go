package cluster_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func postMember(t *testing.T, base, peerURL string) (int, string) {
	t.Helper()
	resp, err := httpc.Post(base+"/v2/members", "application/json", strings.NewReader(`{"peerURLs":["`+peerURL+`"]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func deleteMember(t *testing.T, base, id string) int {
	t.Helper()
	req, _ := http.NewRequest("DELETE", base+"/v2/members/"+id, nil)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func memberID(t *testing.T, c *testCluster, name string) string {
	t.Helper()
	for i, m := range c.members {
		if m.proc == nil {
			continue
		}
		resp, err := httpc.Get(c.members[i].clientURL + "/v2/members")
		if err != nil {
			continue
		}
		var ms struct {
			Members []struct{ ID, Name string }
		}
		err = json.NewDecoder(resp.Body).Decode(&ms)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, mb := range ms.Members {
			if mb.Name == name {
				return mb.ID
			}
		}
	}
	t.Fatalf("no member named %s", name)
	return ""
}
