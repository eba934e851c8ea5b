package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"net"
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
	const n = 3
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var initial []InitialMember
	for i, p := range ports {
		initial = append(initial, InitialMember{Name: fmt.Sprintf("m%d", i), PeerURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", p)}})
	}
	nodes := make([]*Node, n)
	for i, p := range ports {
		node, err := New(Config{
			Name: initial[i].Name, DataDir: t.TempDir(), ListenPeer: fmt.Sprintf("0.0.0.0:%d", p),
			PeerURLs: initial[i].PeerURLs, InitialCluster: initial, InitialClusterState: "new", Token: "adv",
			MaxVoters: 5, HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
			SnapshotCount: 1000, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		// The handler answers who served the request.
		me := node
		if err := node.Start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "leader=%v", me.IsLeader())
		})); err != nil {
			t.Fatal(err)
		}
		nodes[i] = node
		t.Cleanup(func() { node.Stop() })
	}
	var leader *Node
	for deadline := time.Now().Add(time.Minute); leader == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, node := range nodes {
			if node.IsLeader() {
				leader = node
			}
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
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
