package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	etcd "go.etcd.io/etcd/client/v2"
)

// Linearizability model: each key is a register; a get returns the last
// written value ("" when absent); a compare-and-swap writes value only when
// the register holds prev. CAS outputs are "ok", "fail" or "?" (unknown).
type regInput struct {
	put   bool
	cas   bool
	key   string
	value string
	prev  string
}

var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(regInput).key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		switch {
		case in.put:
			return true, in.value
		case in.cas:
			match := state.(string) == in.prev
			switch output.(string) {
			case "ok":
				return match, in.value
			case "fail":
				return !match, state
			default: // unknown: it took effect if it could
				if match {
					return true, in.value
				}
				return true, state
			}
		}
		return output.(string) == state.(string), state
	},
	Equal: func(a, b any) bool { return a == b },
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		switch {
		case in.put:
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		case in.cas:
			return fmt.Sprintf("cas(%s, %s -> %s) %v", in.key, in.prev, in.value, output)
		}
		return fmt.Sprintf("get(%s) -> %v", in.key, output)
	},
}

type history struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
	acked []string // unique keys whose put was acknowledged
	// outcomes counts answers by kind, for the log.
	outcomes map[string]int
	// stale lists plain reads that broke a client's session on its member:
	// older than what the client wrote or read there before.
	stale []string
}

func (h *history) outcome(kind string) {
	h.mu.Lock()
	if h.outcomes == nil {
		h.outcomes = map[string]int{}
	}
	h.outcomes[kind]++
	h.mu.Unlock()
}

func (h *history) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func (h *history) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// session is what one client saw through the member it is pinned to, as
// etcd's v2 client pins one: per key, the newest modified index it wrote
// or read there. A plain read on that member must be at least as new
// (read-your-writes, monotonic reads); after the client moves to another
// member (its member died or hung) it starts a new session.
type session struct {
	member int
	floor  map[string]uint64
}

func (s *session) saw(key string, idx uint64) { s.floor[key] = max(s.floor[key], idx) }

func (s *session) move(n int) {
	s.member = (s.member + 1) % n
	clear(s.floor)
}

// runLoad runs clients, each pinned to a member (spread over all of them,
// followers included) until a request to it fails, until stop closes:
// puts, compare-and-swaps and quorum gets on a few shared keys (recorded
// for porcupine), plain gets checked against the client's session, and
// puts of unique keys (recorded when acknowledged).
func runLoad(c *testCluster, h *history, clients int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	keys := []string{"/lin/a", "/lin/b", "/lin/c", "/lin/d", "/lin/e"}
	urls := make([]string, len(c.members))
	for i, m := range c.members {
		urls[i] = m.clientURL
	}
	for cl := 0; cl < clients; cl++ {
		wg.Add(1)
		go func(cl int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(cl)))
			lastSeen := map[string]string{}
			ss := &session{member: cl % len(urls), floor: map[string]uint64{}}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				base := urls[ss.member]
				ctx := context.Background()
				switch n % 3 {
				case 0, 1:
					key := keys[rng.Intn(len(keys))]
					if prev := lastSeen[key]; prev != "" && rng.Intn(3) == 0 {
						// Compare-and-swap from the last value this client saw.
						val := fmt.Sprintf("c%d-%d", cl, n)
						call := h.now()
						st, r, err := kvDo(ctx, base, "PUT", key, url.Values{"value": {val}, "prevValue": {prev}})
						ret := h.now()
						if notApplied(err, r) {
							if err != nil {
								ss.move(len(urls))
							}
							time.Sleep(20 * time.Millisecond)
							continue
						}
						out := "?"
						switch {
						case st == 200:
							out = "ok"
							lastSeen[key] = val
							ss.saw(key, r.Node.ModifiedIndex)
						case r != nil && (r.ErrorCode == 101 || r.ErrorCode == 100):
							out = "fail"
						default:
							ret = math.MaxInt64
						}
						if err != nil {
							ss.move(len(urls))
						}
						h.outcome("cas " + out)
						h.add(porcupine.Operation{ClientId: cl, Input: regInput{cas: true, key: key, value: val, prev: prev}, Call: call, Output: out, Return: ret})
					} else if rng.Intn(2) == 0 {
						val := fmt.Sprintf("c%d-%d", cl, n)
						call := h.now()
						st, r, err := kvDo(ctx, base, "PUT", key, url.Values{"value": {val}})
						ret := h.now()
						if notApplied(err, r) {
							if err != nil {
								ss.move(len(urls))
							}
							h.outcome("put not applied")
							time.Sleep(20 * time.Millisecond) // no leader: do not spin
							continue
						}
						if r != nil && r.ErrorCode != 0 {
							cause := r.Cause
							if len(cause) > 60 {
								cause = cause[:60]
							}
							h.outcome(fmt.Sprintf("put %d %d %s", st, r.ErrorCode, cause))
						} else {
							h.outcome(fmt.Sprintf("put %d", st))
						}
						if st != 200 && st != 201 {
							// Unknown outcome: it may take effect at any later time.
							ret = math.MaxInt64
						}
						if ret != math.MaxInt64 {
							lastSeen[key] = val
							ss.saw(key, r.Node.ModifiedIndex)
						}
						if err != nil {
							ss.move(len(urls))
						}
						h.add(porcupine.Operation{ClientId: cl, Input: regInput{put: true, key: key, value: val}, Call: call, Output: "", Return: ret})
					} else if rng.Intn(2) == 0 {
						call := h.now()
						st, r, err := kvDo(ctx, base, "GET", key, url.Values{"quorum": {"true"}})
						ret := h.now()
						switch {
						case err == nil && st == 200 && r != nil:
							lastSeen[key] = r.Node.Value
							ss.saw(key, r.Node.ModifiedIndex)
							h.add(porcupine.Operation{ClientId: cl, Input: regInput{key: key}, Call: call, Output: r.Node.Value, Return: ret})
						case err == nil && st == 404 && r != nil && r.ErrorCode == 100:
							h.add(porcupine.Operation{ClientId: cl, Input: regInput{key: key}, Call: call, Output: "", Return: ret})
						case err != nil:
							ss.move(len(urls))
						}
						// A read without an answer changes nothing: leave it out.
					} else {
						// A plain read, served by the member from its own state.
						st, r, err := kvDo(ctx, base, "GET", key, nil)
						var got uint64
						switch {
						case err != nil:
							ss.move(len(urls))
							continue
						case st == 200 && r != nil:
							got = r.Node.ModifiedIndex
						case st == 404 && r != nil && r.ErrorCode == 100:
						default:
							continue
						}
						h.outcome("plain get")
						if want := ss.floor[key]; got < want {
							h.mu.Lock()
							h.stale = append(h.stale, fmt.Sprintf("client %d on %s: %s at index %d, after it saw index %d there", cl, c.members[ss.member].name, key, got, want))
							h.mu.Unlock()
						}
						ss.saw(key, got)
					}
				case 2:
					key := fmt.Sprintf("/acked/c%d-%d", cl, n)
					st, _, err := kvDo(ctx, base, "PUT", key, url.Values{"value": {"x"}})
					if st == 200 || st == 201 {
						h.mu.Lock()
						h.acked = append(h.acked, key)
						h.mu.Unlock()
					}
					if err != nil {
						ss.move(len(urls))
					}
				}
			}
		}(cl)
	}
	return &wg
}

// checkSessions fails the test if a plain read went back in a session.
func checkSessions(t *testing.T, h *history) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.stale) > 0 {
		t.Errorf("%d plain reads older than what their client had written or read on the same member, e.g.\n%s", len(h.stale), strings.Join(h.stale[:min(5, len(h.stale))], "\n"))
	}
}

// notApplied reports answers that prove a put never reached the log: the
// connection was refused, or the member said there was no leader to take it.
func notApplied(err error, r *kvResp) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return err == nil && r != nil && r.ErrorCode == 301
}

// pruneUnknown drops writes of unknown outcome whose value no read
// returned, on keys where no compare-and-swap failed: such a write can
// always be linearized after everything else, so removing it keeps the
// check exact while sparing porcupine an open-ended operation. (A failed
// CAS might be explained only by an unobserved write, so those keys keep
// every write.)
func pruneUnknown(ops []porcupine.Operation) []porcupine.Operation {
	seen := map[string]bool{}
	casFailed := map[string]bool{}
	for _, op := range ops {
		in := op.Input.(regInput)
		switch {
		case !in.put && !in.cas:
			seen[in.key+"="+op.Output.(string)] = true
		case in.cas && op.Output.(string) == "fail":
			casFailed[in.key] = true
		}
	}
	out := ops[:0:0]
	for _, op := range ops {
		in := op.Input.(regInput)
		if (in.put || in.cas) && op.Return == math.MaxInt64 && !seen[in.key+"="+in.value] && !casFailed[in.key] {
			continue
		}
		out = append(out, op)
	}
	return out
}

// waitOps lets the load run until the history grew by n operations.
func waitOps(t *testing.T, h *history, n int) {
	t.Helper()
	target := h.count() + n
	for attempt := 0; h.count() < target; attempt++ {
		if attempt > 3000 {
			t.Fatalf("load stalled at %d operations (want %d)", h.count(), target)
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

	h := &history{start: time.Now()}
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

	h.mu.Lock()
	ops, acked := h.ops, h.acked
	h.mu.Unlock()
	t.Logf("history: %d operations, %d acknowledged unique puts; answers: %v", len(ops), len(acked), h.outcomes)
	checked := pruneUnknown(ops)
	unknown := 0
	for _, op := range checked {
		if op.Return == math.MaxInt64 {
			unknown++
		}
	}
	t.Logf("checking %d operations (%d of unknown outcome) for linearizability", len(checked), unknown)
	if !porcupine.CheckOperations(registerModel, checked) {
		t.Errorf("history is not linearizable: %d operations", len(checked))
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

// TestRegisterModel shows the checker rejects a stale read and accepts the
// same history once the read may overlap the write, and that pruning keeps
// observed unknown puts.
func TestRegisterModel(t *testing.T) {
	put := func(v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: regInput{put: true, key: "/k", value: v}, Call: call, Output: "", Return: ret}
	}
	cas := func(prev, v, out string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: regInput{cas: true, key: "/k", value: v, prev: prev}, Call: call, Output: out, Return: ret}
	}
	get := func(v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: regInput{key: "/k"}, Call: call, Output: v, Return: ret}
	}
	cases := []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"stale read after acknowledged write", []porcupine.Operation{put("1", 0, 1), put("2", 2, 3), get("1", 4, 5)}, false},
		{"read overlapping the write", []porcupine.Operation{put("1", 0, 1), put("2", 2, 5), get("1", 4, 6)}, true},
		{"unknown put observed later", []porcupine.Operation{put("1", 0, math.MaxInt64), get("1", 4, 6)}, true},
		{"value never written", []porcupine.Operation{put("1", 0, 1), get("3", 4, 6)}, false},
		{"unknown put unobserved", []porcupine.Operation{put("1", 0, 1), put("2", 1, math.MaxInt64), get("1", 4, 6)}, true},
		{"cas succeeds on the current value", []porcupine.Operation{put("1", 0, 1), cas("1", "2", "ok", 2, 3), get("2", 4, 5)}, true},
		{"cas cannot succeed on a stale value", []porcupine.Operation{put("1", 0, 1), put("2", 2, 3), cas("1", "3", "ok", 4, 5)}, false},
		{"cas fails only if the value differs", []porcupine.Operation{put("1", 0, 1), cas("1", "3", "fail", 2, 3)}, false},
		{"failed cas explained by an unknown put", []porcupine.Operation{put("1", 0, 1), put("9", 1, math.MaxInt64), cas("1", "3", "fail", 4, 5)}, true},
	}
	for _, tc := range cases {
		ops := pruneUnknown(tc.ops)
		if got := porcupine.CheckOperations(registerModel, ops); got != tc.ok {
			t.Errorf("%s: linearizable=%v, want %v", tc.name, got, tc.ok)
		}
	}
	if n := len(pruneUnknown([]porcupine.Operation{put("1", 0, math.MaxInt64), get("1", 4, 6)})); n != 2 {
		t.Errorf("observed unknown put pruned (%d ops left)", n)
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
	out, err := exec.Command(pithd(t), "run", "--name", m.name, "--data-dir", m.dataDir,
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
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
