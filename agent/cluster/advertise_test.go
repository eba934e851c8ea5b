package cluster

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Members listening on the wildcard address (listen-peer-urls
// http://0.0.0.0:2380, as cloud-configs write it) must still tell
// followers the advertised address, or a follower's Forward dials itself
// (found by the e2e cluster test: writes on followers failed with "not the
// raft leader" and the scheduler never saw heartbeats).
func TestWildcardListenAdvertisesPeerURL(t *testing.T) {
	// The handler answers who served the request.
	nodes, leader := startLocalNodes(t, 3, localNodes{listenHost: "0.0.0.0", handler: func(me *Node) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "leader=%v", me.IsLeader())
		})
	}})
	want, _ := peerAddr(leader.cfg.PeerURLs[0])
	for _, node := range nodes {
		if node == leader {
			continue
		}
		var addr string
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			a, _ := node.raft.LeaderWithID()
			if addr = string(a); addr != "" {
				break
			}
		}
		if addr != want {
			t.Errorf("%s knows the leader as %q, want its advertised %q", node.cfg.Name, addr, want)
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/probe", nil)
		if err := node.Forward(rec, req, nil); err != nil || rec.Body.String() != "leader=true" {
			t.Errorf("%s: Forward: %v, answer %q, want leader=true", node.cfg.Name, err, rec.Body.String())
		}
	}
}
