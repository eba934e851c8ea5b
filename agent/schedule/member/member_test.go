package member

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/fleetv1"
	"github.com/pith-os/pith/internal/pithdtest"
	"github.com/pith-os/pith/unitfile"

	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/agent/schedule/fleetapi"
	"github.com/pith-os/pith/agent/units/simunits"
)

// log is a stand-in for the cluster's raft: one leader appends, every live
// replica applies each entry in order. It replicates exactly what raft
// would hand the FSMs; elections are the test's to decide.
type log struct {
	mu       sync.Mutex
	idx      uint64
	leader   int
	replicas map[int]*schedule.State
}

var errNotLeader = errors.New("not leader")

func (l *log) submit(from int) func(context.Context, []byte) (any, error) {
	return func(_ context.Context, e []byte) (any, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if from != l.leader {
			return nil, errNotLeader
		}
		l.idx++
		var res any
		for i, st := range l.replicas {
			r := st.Apply(l.idx, e)
			if i == from {
				res = r
			}
		}
		return res, nil
	}
}

func (l *log) isLeader(i int) func() bool {
	return func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.leader == i }
}

type node struct {
	svc *Scheduler
	srv *httptest.Server
	// peer stands for the node's peer port: requests on it are from
	// members (what cluster.FromPeer reports).
	peer   *httptest.Server
	sim    *simunits.Sim
	cancel context.CancelFunc
	lead   context.CancelFunc
}

type testCluster struct {
	t     *testing.T
	log   *log
	nodes []*node
}

func newTestCluster(t *testing.T, n int) *testCluster {
	tc := &testCluster{t: t, log: &log{replicas: map[int]*schedule.State{}}}
	for i := 0; i < n; i++ {
		tc.log.replicas[i] = schedule.NewState()
	}
	for i := 0; i < n; i++ {
		i := i
		sim, err := simunits.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		nd := &node{sim: sim}
		svc, err := New(Config{
			Machine:    schedule.Machine{ID: fmt.Sprintf("m%d", i), PublicIP: "127.0.0.1", Metadata: map[string]string{"n": fmt.Sprint(i)}},
			State:      tc.log.replicas[i],
			Propose:    tc.log.submit(i),
			IsLeader:   tc.log.isLeader(i),
			Forward:    tc.forward,
			FromMember: fromPeer,
			Backend:    sim,
			TTL:        400 * time.Millisecond,
			Interval:   40 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		nd.svc = svc
		nd.srv = httptest.NewServer(svc.Handler())
		nd.peer = httptest.NewServer(markPeer(svc.Handler()))
		tc.nodes = append(tc.nodes, nd)
	}
	for _, nd := range tc.nodes {
		ctx, cancel := context.WithCancel(context.Background())
		nd.cancel = cancel
		go nd.svc.RunAgent(ctx)
	}
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			nd.cancel()
			if nd.lead != nil {
				nd.lead()
			}
			nd.srv.Close()
			nd.peer.Close()
		}
	})
	tc.elect(0, 1)
	return tc
}

type peerKey struct{}

// markPeer and fromPeer stand for agent/cluster's peer-port mark.
func markPeer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, true)))
	})
}

func fromPeer(r *http.Request) bool { return r.Context().Value(peerKey{}) != nil }

// forward relays to the leader's peer server, as cluster.Node.Forward
// relays over the peer port.
func (tc *testCluster) forward(w http.ResponseWriter, r *http.Request, body []byte) error {
	tc.log.mu.Lock()
	leader := tc.nodes[tc.log.leader]
	tc.log.mu.Unlock()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, leader.peer.URL+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, err = io.Copy(w, resp.Body)
	return err
}

func (tc *testCluster) elect(i int, term uint64) {
	for _, nd := range tc.nodes {
		if nd.lead != nil {
			nd.lead()
			nd.lead = nil
		}
	}
	tc.log.mu.Lock()
	tc.log.leader = i
	tc.log.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	tc.nodes[i].lead = cancel
	go tc.nodes[i].svc.Lead(ctx, term)
}

// kill stops a machine: its agent stops heartbeating and its API is gone.
func (tc *testCluster) kill(i int) {
	tc.nodes[i].cancel()
	tc.nodes[i].srv.Close()
	tc.nodes[i].peer.Close()
}

func launchedOn(c *fleetv1.Client, name string) (string, bool, string) {
	u, err := c.Unit(context.Background(), name)
	if err != nil || u == nil {
		return "", false, fmt.Sprint(err)
	}
	return u.MachineID, u.CurrentState == "launched", fmt.Sprintf("%s on %q (%s) %s", name, u.MachineID, u.CurrentState, u.Reason)
}

func TestNodesRescheduleAndLeaderChange(t *testing.T) {
	tc := newTestCluster(t, 3)
	// Talk to a follower: writes and reads are forwarded to the leader.
	c, err := fleetv1.NewClient(tc.nodes[2].srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pithdtest.Poll(t, "3 machines", func() (bool, string) {
		ms, err := c.Machines(ctx)
		return err == nil && len(ms) == 3, fmt.Sprint(len(ms), err)
	})
	opts := []*unitfile.UnitOption{
		{Section: "Service", Name: "ExecStart", Value: "/usr/bin/mongod"},
		{Section: "X-Fleet", Name: "Conflicts", Value: "mongo@*.service"},
	}
	for _, n := range []string{"mongo@1.service", "mongo@2.service"} {
		if err := c.CreateUnit(ctx, &fleetv1.Unit{Name: n, DesiredState: "launched", Options: opts}); err != nil {
			t.Fatal(err)
		}
	}
	where := map[string]string{}
	for _, n := range []string{"mongo@1.service", "mongo@2.service"} {
		pithdtest.Poll(t, n+" launched", func() (bool, string) {
			m, ok, s := launchedOn(c, n)
			where[n] = m
			return ok, s
		})
	}
	if where["mongo@1.service"] == where["mongo@2.service"] {
		t.Fatalf("conflicting units together on %s", where["mongo@1.service"])
	}
	// Kill the machine of mongo@1 unless it is the leader's; then mongo@2's.
	victim := "mongo@1.service"
	if where[victim] == "m0" {
		victim = "mongo@2.service"
	}
	var vi int
	fmt.Sscanf(where[victim], "m%d", &vi)
	tc.kill(vi)
	pithdtest.Poll(t, victim+" rescheduled", func() (bool, string) {
		m, ok, s := launchedOn(c, victim)
		return ok && m != where[victim], s
	})
	m, _, _ := launchedOn(c, victim)
	var mi int
	fmt.Sscanf(m, "m%d", &mi)
	if got := tc.nodes[mi].sim.Active(); !contains(got, victim) {
		t.Fatalf("%s not running on %s's systemd: %v", victim, m, got)
	}
	other := "mongo@1.service"
	if victim == other {
		other = "mongo@2.service"
	}
	if om, _, _ := launchedOn(c, other); om == m || om != where[other] {
		t.Fatalf("%s moved to %s (was %s) while %s moved to %s", other, om, where[other], victim, m)
	}

	// Leader change to a surviving follower: nothing moves, and the new
	// leader keeps scheduling (a global unit reaches both live machines).
	before := placements(t, c)
	newLeader := 1
	if vi == 1 {
		newLeader = 2
	}
	tc.elect(newLeader, 2)
	var live []string
	for i := range tc.nodes {
		if i != vi {
			live = append(live, fmt.Sprintf("m%d", i))
		}
	}
	clientOf := 0
	if clientOf == vi {
		clientOf = 3 - vi - newLeader
	}
	c2, _ := fleetv1.NewClient(tc.nodes[clientOf].srv.URL)
	if err := c2.CreateUnit(ctx, &fleetv1.Unit{Name: "log.service", DesiredState: "launched", Options: []*unitfile.UnitOption{
		{Section: "Service", Name: "ExecStart", Value: "/usr/bin/logger"}, {Section: "X-Fleet", Name: "Global", Value: "true"}}}); err != nil {
		t.Fatal(err)
	}
	pithdtest.Poll(t, "global on live machines", func() (bool, string) {
		st, err := c2.UnitStates(ctx, []string{"log.service"}, nil)
		var on []string
		for _, s := range st {
			if s.SystemdActiveState == "active" {
				on = append(on, s.MachineID)
			}
		}
		sort.Strings(on)
		return err == nil && strings.Join(on, ",") == strings.Join(live, ","), fmt.Sprint(on, err)
	})
	if after := placements(t, c2); after != before {
		t.Fatalf("placements changed across leader change:\n%s\n%s", before, after)
	}
}

func placements(t *testing.T, c *fleetv1.Client) string {
	us, err := c.Units(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, u := range us {
		if u.MachineID != "" {
			out = append(out, u.Name+"@"+u.MachineID)
		}
	}
	return strings.Join(out, " ")
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestFollowerWithoutLeader(t *testing.T) {
	st := schedule.NewState()
	svc, err := New(Config{State: st, Propose: func(context.Context, []byte) (any, error) { return nil, errNotLeader },
		IsLeader: func() bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/fleet/v1/units")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), `"code":503`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if _, err := New(Config{State: st, Propose: svc.cfg.Propose, IsLeader: svc.cfg.IsLeader, Backend: &simunits.Sim{}}); err == nil {
		t.Fatal("agent without machine ID accepted")
	}
}

func post(t *testing.T, url, body string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+fleetapi.HeartbeatPath, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Anyone who reaches a client port must not register machines or fake
// unit states: heartbeats count only from members, over the peer port.
func TestHeartbeatsOnlyFromMembers(t *testing.T) {
	tc := newTestCluster(t, 3)
	c, _ := fleetv1.NewClient(tc.nodes[1].srv.URL)
	ctx := context.Background()
	machines := func() string {
		ms, err := c.Machines(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		return strings.Join(ids, ",")
	}
	pithdtest.Poll(t, "3 machines", func() (bool, string) { s := machines(); return s == "m0,m1,m2", s })
	forged := `{"machine":{"id":"evil","primaryIP":"10.6.6.6"},"units":[{"name":"x.service","hash":"0123456789abcdef0123456789abcdef01234567","currentState":"launched","loadState":"loaded","activeState":"active","subState":"running"}]}`
	for i, nd := range tc.nodes {
		// Leader and followers alike, also with the forwarding header a
		// follower sets: the mark comes from the listener, not the request.
		for _, hdr := range [][]string{nil, {"X-Pith-Forwarded", "m0"}} {
			code, body := post(t, nd.srv.URL, forged, hdr...)
			if code != http.StatusForbidden || !strings.Contains(body, "only from cluster members") {
				t.Fatalf("forged heartbeat on node %d's client port (%v): %d %s", i, hdr, code, body)
			}
		}
	}
	if s := machines(); strings.Contains(s, "evil") {
		t.Fatalf("forged heartbeats registered machines: %s", s)
	}
	// The same heartbeat from a member (a follower's peer port forwards
	// to the leader) counts: the check above is what kept it out. Posted
	// until seen: it is alive for one TTL (400 ms) after each beat.
	pithdtest.Poll(t, "a member's heartbeat counted", func() (bool, string) {
		if code, body := post(t, tc.nodes[2].peer.URL, forged); code != http.StatusNoContent {
			t.Fatalf("member heartbeat: %d %s", code, body)
		}
		s := machines()
		return strings.HasPrefix(s, "evil,"), s
	})
}

// What a follower forwards and what the leader reads is one limit,
// schedule.MaxHeartbeatSize, and the largest valid heartbeat passes both.
func TestHeartbeatSizeLimit(t *testing.T) {
	tc := newTestCluster(t, 2)
	small := `{"machine":{"id":"pad","primaryIP":"127.0.0.1"},"units":[]}`
	at := small + strings.Repeat(" ", schedule.MaxHeartbeatSize-len(small))
	for _, via := range []struct{ name, url string }{{"leader", tc.nodes[0].peer.URL}, {"follower", tc.nodes[1].peer.URL}} {
		if code, body := post(t, via.url, at); code != http.StatusNoContent {
			t.Fatalf("%d-byte heartbeat via the %s: %d %s", len(at), via.name, code, body)
		}
		if code, body := post(t, via.url, at+" "); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, fmt.Sprint(schedule.MaxHeartbeatSize)) {
			t.Fatalf("%d-byte heartbeat via the %s: %d %s", len(at)+1, via.name, code, body)
		}
	}
	// A full machine's heartbeat through a follower: every report arrives.
	hb := schedule.Heartbeat{Machine: schedule.Machine{ID: "full", PublicIP: "127.0.0.1"}}
	for i := 0; i < schedule.MaxUnitsPerMachine; i++ {
		p := fmt.Sprintf("u%04d", i)
		hb.Units = append(hb.Units, schedule.UnitReport{Name: p + strings.Repeat(`\`, unitfile.MaxUnitNameLen-len(p)-8) + ".service",
			Hash: "0123456789abcdef0123456789abcdef01234567", Current: unitfile.Launched, LoadState: "loaded", ActiveState: "active", SubState: "running",
			Error: strings.Repeat("e", schedule.MaxReportErrorLen)})
	}
	b, _ := json.Marshal(hb)
	// Posted until the leader is seen holding it: the machine counts as
	// alive for one TTL (400 ms here) after each beat.
	pithdtest.Poll(t, "the full machine's reports on the leader", func() (bool, string) {
		if code, body := post(t, tc.nodes[1].peer.URL, string(b)); code != http.StatusNoContent {
			t.Fatalf("%d-byte full heartbeat via the follower: %d %s", len(b), code, body)
		}
		for _, mr := range tc.nodes[0].svc.Liveness().Reports() {
			if mr.MachineID == "full" {
				return len(mr.Units) == schedule.MaxUnitsPerMachine, fmt.Sprint(len(mr.Units), " reports")
			}
		}
		return false, "machine not live"
	})
}

// A follower whose replica is behind the leader's (restarted from an old
// snapshot) must not act on its stale assignments: it heartbeats, learns
// the leader's applied index, and starts units only once it applied that
// far.
func TestAgentWaitsForReplicaToCatchUp(t *testing.T) {
	st := schedule.NewState()
	apply := func(idx uint64, cmd *schedule.Command) {
		t.Helper()
		e, err := schedule.EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if res := st.Apply(idx, e); res != nil {
			if err, ok := res.(error); ok {
				t.Fatal(err)
			}
		}
	}
	m := schedule.Machine{ID: "m1", PublicIP: "127.0.0.1"}
	opts, err := unitfile.ParseUnitFile([]byte("[Service]\nExecStart=/bin/true\n"))
	if err != nil {
		t.Fatal(err)
	}
	apply(1, &schedule.Command{Op: schedule.OpRegisterMachine, Machine: &m})
	apply(2, &schedule.Command{Op: schedule.OpCreateUnit, Unit: &schedule.UnitSpec{Name: "old.service", Options: opts, Desired: unitfile.Launched}})
	apply(3, &schedule.Command{Op: schedule.OpPlace, Term: 1, Placements: []schedule.Placement{{Unit: "old.service", To: "m1"}}})

	sim, err := simunits.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	applied := uint64(3)
	beats := make(chan struct{}, 100)
	var logs bytes.Buffer
	logw := writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(b) })
	svc, err := New(Config{
		Machine:      m,
		State:        st,
		Backend:      sim,
		Propose:      func(context.Context, []byte) (any, error) { return nil, errNotLeader },
		IsLeader:     func() bool { return false },
		AppliedIndex: func() uint64 { mu.Lock(); defer mu.Unlock(); return applied },
		// The leader is at index 7: it moved old.service away meanwhile.
		Forward: func(w http.ResponseWriter, r *http.Request, body []byte) error {
			w.Header().Set(fleetapi.AppliedIndexHeader, "7")
			w.WriteHeader(http.StatusNoContent)
			select {
			case beats <- struct{}{}:
			default:
			}
			return nil
		},
		TTL:      time.Second,
		Interval: 5 * time.Millisecond,
		Log:      slog.New(slog.NewTextHandler(logw, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.RunAgent(ctx) }()
	defer func() { cancel(); <-done }()
	for i := 0; i < 5; i++ {
		<-beats
	}
	if ops := sim.Ops; len(ops) != 0 {
		t.Fatalf("the agent acted on a replica at index 3 while the leader is at 7: %v", ops)
	}
	// The updater's health check must not trust the stale assignments either.
	if us, _, err := svc.LocalUnits(); err == nil {
		t.Fatalf("LocalUnits before the catch-up: %d units, no error", len(us))
	}
	mu.Lock()
	if first, _, _ := strings.Cut(logs.String(), "\n"); !strings.Contains(first, "waiting for this node's log") || !strings.Contains(first, "leader_index=7 applied=3") {
		t.Errorf("logs %q: want the wait explained first", logs.String())
	}
	mu.Unlock()

	// The log catches up: old.service was moved away (index 4), and a unit
	// for this machine arrived.
	apply(4, &schedule.Command{Op: schedule.OpPlace, Term: 1, Placements: []schedule.Placement{{Unit: "old.service", From: "m1", To: "m2"}}})
	apply(5, &schedule.Command{Op: schedule.OpCreateUnit, Unit: &schedule.UnitSpec{Name: "new.service", Options: opts, Desired: unitfile.Launched}})
	apply(6, &schedule.Command{Op: schedule.OpPlace, Term: 1, Placements: []schedule.Placement{{Unit: "new.service", To: "m1"}}})
	mu.Lock()
	applied = 7
	mu.Unlock()
	guard := time.After(2 * time.Minute) // against a hang only
	for {
		active := sim.Active()
		if len(active) == 1 && active[0] == "new.service" {
			break
		}
		if slices.Contains(active, "old.service") {
			t.Fatalf("old.service started after the catch-up: %v", active)
		}
		select {
		case <-beats:
		case <-guard:
			t.Fatalf("new.service never started after the catch-up; active %v", active)
		}
	}
	// In-process, what this machine runs and what its agent reports.
	for {
		us, reports, err := svc.LocalUnits()
		if err != nil {
			t.Fatalf("LocalUnits after the catch-up: %v", err)
		}
		if len(us) != 1 || us[0].Name != "new.service" || us[0].Desired != unitfile.Launched {
			t.Fatalf("LocalUnits = %v, want new.service launched", us)
		}
		if reports["new.service"].ActiveState == "active" {
			break
		}
		select {
		case <-beats:
		case <-guard:
			t.Fatalf("no active report for new.service: %v", reports)
		}
	}
}

// writerFunc is an io.Writer made of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
