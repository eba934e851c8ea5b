package cluster_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pith-os/pith/internal/kvcheck"
	"github.com/pith-os/pith/internal/pithdtest"
	etcd "go.etcd.io/etcd/client/v2"
)

// runLoad starts kvcheck's clients on the cluster's members (internal/kvcheck).
func runLoad(c *testCluster, h *kvcheck.History, clients int, stop <-chan struct{}) *sync.WaitGroup {
	l := &kvcheck.Load{
		Client:  &kvcheck.Client{HTTP: httpc, Members: len(c.members), URL: func(i int) string { return c.members[i].clientURL }},
		History: h, Clients: clients,
		Name: func(i int) string { return c.members[i].name },
	}
	return l.Run(stop)
}

// checkSessions fails the test if a plain read went back in a session.
func checkSessions(t *testing.T, h *kvcheck.History) {
	t.Helper()
	if stale := h.Stale(); len(stale) > 0 {
		t.Errorf("%d plain reads older than what their client had written or read on the same member, e.g.\n%s", len(stale), strings.Join(stale[:min(5, len(stale))], "\n"))
	}
}

// waitOps lets the load run until the history grew by n operations.
func waitOps(t *testing.T, h *kvcheck.History, n int) {
	t.Helper()
	target := h.Count() + n
	for attempt := 0; h.Count() < target; attempt++ {
		if attempt > 3000 {
			t.Fatalf("load stalled at %d operations (want %d)", h.Count(), target)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterFaults runs a real 3-member cluster through a kill -9 of the
// leader and a SIGSTOP/SIGCONT of the next leader under load, then restarts
// every member from disk, and checks that no acknowledged write was lost
// and that the recorded history is linearizable.
func TestClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test: builds and runs pithd (run without -short)")
	}
	c := newCluster(t, 3)
	c.startAll()
	leader := c.waitLeader()
	t.Logf("leader: %s", c.members[leader].name)

	// Write on one member, read on another.
	writer, reader := (leader+1)%3, (leader+2)%3
	st, r, err := kvDo(context.Background(), c.members[writer].clientURL, "PUT", "/hello", url.Values{"value": {"world"}})
	if err != nil || st != 201 || r.Node.Value != "world" {
		t.Fatalf("put through a follower: %d %+v %v", st, r, err)
	}
	if st, r := c.quorumGet(reader, "/hello"); st != 200 || r.Node.Value != "world" {
		t.Fatalf("quorum read through another member: %d %+v", st, r)
	}

	h := kvcheck.NewHistory()
	stop := make(chan struct{})
	wg := runLoad(c, h, 6, stop)
	waitOps(t, h, 60)

	// kill -9 the leader under load.
	t.Logf("kill -9 %s", c.members[leader].name)
	c.signal(leader, syscall.SIGKILL)
	next := c.waitLeader(leader)
	t.Logf("new leader: %s", c.members[next].name)
	waitOps(t, h, 60)
	c.start(leader, "new")
	c.waitLeader()
	waitOps(t, h, 30)

	// Pause the current leader, let the others elect, resume it.
	paused := c.waitLeader()
	t.Logf("SIGSTOP %s", c.members[paused].name)
	c.signal(paused, syscall.SIGSTOP)
	c.waitLeader(paused)
	waitOps(t, h, 60)
	c.signal(paused, syscall.SIGCONT)
	c.waitLeader()
	waitOps(t, h, 30)
	close(stop)
	wg.Wait()

	ops, acked := h.Ops(), h.Acked()
	t.Logf("history: %d operations, %d acknowledged unique puts; answers: %v", len(ops), len(acked), h.Outcomes())
	res := kvcheck.Check(ops)
	t.Logf("checked %s", res)
	if !res.Linearizable {
		t.Errorf("history is not linearizable: %s", res)
	}
	checkSessions(t, h)
	checkAcked := func(stage string) {
		t.Helper()
		var lost []string
		for i, k := range acked {
			if st, _ := c.quorumGet(i%3, k); st != 200 {
				lost = append(lost, k)
			}
		}
		if len(lost) > 0 {
			t.Fatalf("%s: %d of %d acknowledged writes lost, e.g. %v", stage, len(lost), len(acked), lost[0])
		}
	}
	checkAcked("after faults")

	// Restart every member from its data dir.
	for i := range c.members {
		c.signal(i, syscall.SIGKILL)
	}
	for i := range c.members {
		c.start(i, "new")
	}
	c.waitLeader()
	checkAcked("after restarting all members")
	if st, r := c.quorumGet(0, "/hello"); st != 200 || r.Node.Value != "world" {
		t.Fatalf("after restart: %d %+v", st, r)
	}
}

// TestMembership adds a member to a running cluster, checks it catches up,
// removes another, and restarts the new one from its data dir.
func TestMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll()
	c.waitLeader()
	c.mustPut("/before", "1")
	// etcd's own members client (what pithctl member uses) reads the list
	// and the leader.
	ec, err := etcd.New(etcd.Config{Endpoints: []string{c.members[0].clientURL, c.members[1].clientURL, c.members[2].clientURL}})
	if err != nil {
		t.Fatal(err)
	}
	mapi := etcd.NewMembersAPI(ec)
	for attempt := 0; ; attempt++ {
		ms, err := mapi.List(context.Background())
		published := err == nil && len(ms) == 3
		for _, mb := range ms {
			published = published && mb.Name != "" && len(mb.ClientURLs) == 1
		}
		if published {
			break
		}
		if attempt > 300 {
			t.Fatalf("members never published: %+v %v", ms, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ld, err := mapi.Leader(context.Background()); err != nil || ld == nil || ld.Name == "" {
		t.Fatalf("members leader: %+v %v", ld, err)
	}
	// A voter dies; the operator removes it and adds a replacement.
	if st := deleteMember(t, c.members[1].clientURL, "ffff"); st != 404 {
		t.Fatalf("removing an unknown member: %d", st)
	}
	dead := c.waitLeader()
	deadID := memberID(t, c, c.members[dead].name)
	c.signal(dead, syscall.SIGKILL)
	alive := (dead + 1) % 3
	c.waitLeader(dead)
	if st := deleteMember(t, c.members[alive].clientURL, deadID); st != 204 {
		t.Fatalf("removing the dead member: %d", st)
	}
	m := c.newMember(t.TempDir(), "m3")
	st, body := postMember(t, c.members[alive].clientURL, m.peerURL)
	if st != 201 {
		t.Fatalf("member add: %d %s", st, body)
	}
	if st, body := postMember(t, c.members[alive].clientURL, m.peerURL); st != 409 {
		t.Fatalf("adding the same peer URL twice: %d %s", st, body)
	}
	c.initial = ""
	c.start(3, "existing")
	c.waitLeader(dead)
	for attempt := 0; ; attempt++ {
		st, r, _ := kvDo(context.Background(), m.clientURL, "GET", "/before", nil)
		if st == 200 && r.Node.Value == "1" {
			break
		}
		if attempt > 300 {
			t.Fatalf("replacement member never caught up: %d %+v", st, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.mustPut("/after", "2")
	// The replacement restarts from its data dir and rejoins by itself.
	c.signal(3, syscall.SIGKILL)
	c.start(3, "existing")
	c.waitLeader(dead)
	if st, r := c.quorumGet(3, "/after"); st != 200 || r.Node.Value != "2" {
		t.Fatalf("restarted replacement: %d %+v", st, r)
	}
	if ms, err := mapi.List(context.Background()); err != nil || len(ms) != 3 {
		t.Fatalf("members after replacement: %+v %v", ms, err)
	}
}

// TestSnapshotCatchUp compacts the log while a member is down, so the
// member can only catch up from a snapshot sent by the leader.
func TestSnapshotCatchUp(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	for _, m := range c.members {
		m.extra = []string{"--snapshot-count", "16", "--snapshot-interval", "200ms"}
	}
	c.startAll()
	leader := c.waitLeader()
	down := (leader + 1) % 3
	c.signal(down, syscall.SIGKILL)
	for i := 0; i < 100; i++ {
		c.mustPut(fmt.Sprintf("/snap/%03d", i), fmt.Sprint(i))
	}
	// Wait (bounded) until the leader wrote a snapshot.
	snapDir := filepath.Join(c.members[leader].dataDir, "snapshots")
	for attempt := 0; ; attempt++ {
		if ents, _ := os.ReadDir(snapDir); len(ents) > 0 {
			break
		}
		if attempt > 600 {
			t.Fatalf("leader never wrote a snapshot in %s", snapDir)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.mustPut("/snap/last", "x")
	c.start(down, "new")
	for attempt := 0; ; attempt++ {
		st, r, _ := kvDo(context.Background(), c.members[down].clientURL, "GET", "/snap", url.Values{"recursive": {"true"}})
		if st == 200 && len(r.Node.Nodes) == 101 {
			break
		}
		if attempt > 600 {
			t.Fatalf("restarted member never caught up: %d", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Watches with an index from before the snapshot still find history
	// restored with it.
	st, r, err := kvDo(context.Background(), c.members[down].clientURL, "GET", "/snap/last", url.Values{"wait": {"true"}, "waitIndex": {"95"}, "recursive": {"true"}})
	if err != nil || st != 200 || r.Node.Key == "" {
		t.Fatalf("watch from history after snapshot install: %d %+v %v", st, r, err)
	}
}

// TestDataDirLocked starts a second pithd on a running member's data dir:
// it must refuse with a clear error, not wait or corrupt the log.
func TestDataDirLocked(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 1)
	c.startAll()
	c.waitLeader()
	m := c.members[0]
	out, err := exec.Command(pithdtest.Binary(t), "run", "--name", m.name, "--data-dir", m.dataDir,
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", pithdtest.FreePort(t)),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", pithdtest.FreePort(t)),
		"--initial-advertise-peer-urls", m.peerURL, "--initial-cluster", c.initial).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is in use by another process") {
		t.Fatalf("second pithd on the same data dir: %v\n%s", err, out)
	}
	c.mustPut("/still", "fine")
}

// TestGracefulStopHandsOver stops the leader with SIGTERM: it transfers
// leadership first, and the others keep serving writes.
func TestGracefulStopHandsOver(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll()
	leader := c.waitLeader()
	c.signal(leader, syscall.SIGTERM)
	if b, _ := os.ReadFile(c.members[leader].logPath); !strings.Contains(string(b), "pithd stopping") {
		t.Fatalf("leader did not stop gracefully:\n%s", b)
	}
	next := c.waitLeader(leader)
	if next == leader {
		t.Fatal("stopped member still leads")
	}
	c.mustPut("/after-stop", "ok")
	c.start(leader, "new")
	c.waitLeader()
	if st, r := c.quorumGet(leader, "/after-stop"); st != 200 || r.Node.Value != "ok" {
		t.Fatalf("restarted member: %d %+v", st, r)
	}
}
