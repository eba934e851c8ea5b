package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

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
	svc    *Service
	srv    *httptest.Server
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
			Machine:  schedule.Machine{ID: fmt.Sprintf("m%d", i), PublicIP: "127.0.0.1", Metadata: map[string]string{"n": fmt.Sprint(i)}},
			State:    tc.log.replicas[i],
			Propose:  tc.log.submit(i),
			IsLeader: tc.log.isLeader(i),
			Forward:  tc.forward,
			Backend:  sim,
			TTL:      400 * time.Millisecond,
			Interval: 40 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		nd.svc = svc
		nd.srv = httptest.NewServer(svc.Handler())
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
		}
	})
	tc.elect(0, 1)
	return tc
}

// forward relays to the leader's HTTP server, as cluster.Node.Forward
// relays over the peer port.
func (tc *testCluster) forward(w http.ResponseWriter, r *http.Request, body []byte) error {
	tc.log.mu.Lock()
	leader := tc.nodes[tc.log.leader]
	tc.log.mu.Unlock()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, leader.srv.URL+r.URL.RequestURI(), bytes.NewReader(body))
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
}

// eventually polls until cond holds; the test binary's timeout is the only
// limit (no wall-clock assertions).
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	last := ""
	for i := 0; ; i++ {
		ok, state := cond()
		if ok {
			return
		}
		if state != last && i > 0 {
			t.Logf("waiting for %s: %s", what, state)
			last = state
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func launchedOn(c *fleetapi.Client, name string) (string, bool, string) {
	u, err := c.Unit(context.Background(), name)
	if err != nil || u == nil {
		return "", false, fmt.Sprint(err)
	}
	return u.MachineID, u.CurrentState == "launched", fmt.Sprintf("%s on %q (%s) %s", name, u.MachineID, u.CurrentState, u.Reason)
}

func TestNodesRescheduleAndLeaderChange(t *testing.T) {
	tc := newTestCluster(t, 3)
	// Talk to a follower: writes and reads are forwarded to the leader.
	c, err := fleetapi.NewClient(tc.nodes[2].srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	eventually(t, "3 machines", func() (bool, string) {
		ms, err := c.Machines(ctx)
		return err == nil && len(ms) == 3, fmt.Sprint(len(ms), err)
	})
	opts := []*schedule.UnitOption{
		{Section: "Service", Name: "ExecStart", Value: "/usr/bin/mongod"},
		{Section: "X-Fleet", Name: "Conflicts", Value: "mongo@*.service"},
	}
	for _, n := range []string{"mongo@1.service", "mongo@2.service"} {
		if err := c.CreateUnit(ctx, &fleetapi.Unit{Name: n, DesiredState: "launched", Options: opts}); err != nil {
			t.Fatal(err)
		}
	}
	where := map[string]string{}
	for _, n := range []string{"mongo@1.service", "mongo@2.service"} {
		eventually(t, n+" launched", func() (bool, string) {
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
	eventually(t, victim+" rescheduled", func() (bool, string) {
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
	c2, _ := fleetapi.NewClient(tc.nodes[clientOf].srv.URL)
	if err := c2.CreateUnit(ctx, &fleetapi.Unit{Name: "log.service", DesiredState: "launched", Options: []*schedule.UnitOption{
		{Section: "Service", Name: "ExecStart", Value: "/usr/bin/logger"}, {Section: "X-Fleet", Name: "Global", Value: "true"}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "global on live machines", func() (bool, string) {
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

func placements(t *testing.T, c *fleetapi.Client) string {
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
