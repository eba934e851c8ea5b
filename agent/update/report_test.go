package update

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/pki"
)

// fleetServer serves cs's repository with the fleet API and records which
// release payloads were downloaded.
type fleetServer struct {
	fleet *channels.Fleet
	dir   string
	mu    sync.Mutex
	got   []string
}

func newFleetServer(t *testing.T, cs *channelServer) *fleetServer {
	srv, err := channels.NewServer(cs.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	fs := &fleetServer{dir: t.TempDir()}
	if srv.Fleet, err = channels.OpenFleet(fs.dir); err != nil {
		t.Fatal(err)
	}
	fs.fleet = srv.Fleet
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		fs.got = append(fs.got, r.URL.Path)
		fs.mu.Unlock()
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { ts.Close(); srv.Close() })
	cs.url = ts.URL // the agents cs makes now talk to this server
	return fs
}

// downloaded reports whether any payload of version was fetched.
func (fs *fleetServer) downloaded(version string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return slices.ContainsFunc(fs.got, func(p string) bool {
		return strings.HasPrefix(p, "/"+version+"/") && !strings.HasSuffix(p, "manifest.json") && !strings.HasSuffix(p, ".sig")
	})
}

func (fs *fleetServer) rollout(t *testing.T, r *channels.Rollout) {
	t.Helper()
	r.Channel, r.Generation = "stable", r.Generation+1
	if r.State == "" {
		r.State = channels.RolloutActive
	}
	if err := channels.WriteRollout(fs.dir, r); err != nil {
		t.Fatal(err)
	}
}

// drain sends the reporter's queue now (its Run goroutine would, later).
func drain(r *Reporter) {
	for len(r.q) > 0 {
		r.send(context.Background(), <-r.q)
	}
}

type testNode struct {
	id    string
	state string
	slots *fakeSlots
	rb    *fakeReboot
	a     *Agent
	rep   *Reporter
}

func (n *testNode) boot(t *testing.T, cs *channelServer, running string) {
	t.Helper()
	n.a = cs.agent(t, n.state, n.id, running, n.slots, n.rb, nil, StrategyReboot)
	var err error
	if n.rep, err = NewReporter(n.a, ""); err != nil {
		t.Fatal(err)
	}
	if err := n.a.AfterBoot(context.Background()); err != nil {
		t.Fatal(err)
	}
	drain(n.rep)
}

func (n *testNode) check(t *testing.T) {
	t.Helper()
	if err := n.a.CheckOnce(context.Background()); err != nil {
		t.Fatalf("%s: %v", n.id, err)
	}
	drain(n.rep)
}

func lastEvent(fs *fleetServer, id string) channels.MachineView {
	for _, m := range fs.fleet.View(0).Last {
		if m.ID == id {
			return m
		}
	}
	return channels.MachineView{}
}

// TestRolloutThroughAgents is the issue's VM scenario on fake slots: a
// rollout admitting one of three machines updates only that one; resume
// updates the rest; a release that rolls back on its first machine halts
// the rollout and the other two never download it. Every step is reported.
func TestRolloutThroughAgents(t *testing.T) {
	cs := newChannelServer(t)
	fs := newFleetServer(t, cs)
	cs.publish(t, "1.0.0", 1)
	nodes := make([]*testNode, 3)
	for i := range nodes {
		nodes[i] = &testNode{id: fmt.Sprintf("machine-%d", i+1), state: t.TempDir(), slots: newFakeSlots(t, "a"), rb: &fakeReboot{}}
		nodes[i].boot(t, cs, "1.0.0")
	}
	cs.publish(t, "1.1.0", 10)
	// A percentage between the first and second machine's place admits
	// exactly the first.
	places := make([]float64, 3)
	for i, n := range nodes {
		places[i] = channels.Bucket(n.id, "1.1.0")
	}
	order := []int{0, 1, 2}
	slices.SortFunc(order, func(a, b int) int { return int(1e6 * (places[a] - places[b])) })
	first := nodes[order[0]]
	fs.rollout(t, &channels.Rollout{Version: "1.1.0", Percent: (places[order[0]] + places[order[1]]) / 2, Halt: channels.DefaultHaltRule})
	for _, n := range nodes {
		n.check(t)
	}
	for _, n := range nodes {
		updating := n.rb.count() == 1
		if updating != (n == first) {
			t.Fatalf("%s (place %.1f): rebooted %d times; only %s should update", n.id, channels.Bucket(n.id, "1.1.0"), n.rb.count(), first.id)
		}
		if ev := lastEvent(fs, n.id); n != first && (ev.Event != channels.EventChecked || !strings.Contains(ev.Reason, "held back")) {
			t.Errorf("%s: last report %+v, want checked, held back", n.id, ev)
		}
	}
	if ev := lastEvent(fs, first.id); ev.Event != channels.EventRebooting || ev.Version != "1.1.0" {
		t.Errorf("%s: last report %+v, want rebooting 1.1.0", first.id, ev)
	}
	first.slots.running = "b"
	first.boot(t, cs, "1.1.0")
	if ev := lastEvent(fs, first.id); ev.Event != channels.EventGood || ev.Running != "1.1.0" {
		t.Errorf("%s after its reboot: last report %+v, want good on 1.1.0", first.id, ev)
	}

	// Resume to everyone.
	fs.rollout(t, &channels.Rollout{Version: "1.1.0", Percent: 100, Halt: channels.DefaultHaltRule, Generation: 1})
	for _, n := range nodes {
		if n == first {
			continue
		}
		n.check(t)
		if n.rb.count() != 1 {
			t.Fatalf("%s did not update after the resume", n.id)
		}
		n.slots.running = "b"
		n.boot(t, cs, "1.1.0")
	}
	for _, vc := range fs.fleet.View(0).Channels[0].Versions {
		if vc.Version != "1.1.0" || vc.Machines != 3 {
			t.Fatalf("fleet after the resume: %+v", fs.fleet.View(0).Channels[0].Versions)
		}
	}

	// 1.2.0 rolls back on its first machine: halt at the first failure.
	cs.publish(t, "1.2.0", 20)
	fs.rollout(t, &channels.Rollout{Version: "1.2.0", Percent: 100, Halt: channels.HaltRule{First: 5, MaxFirst: 0, MaxPercent: 5}, Generation: 2})
	bad := nodes[0]
	bad.check(t)
	if bad.rb.count() != 2 {
		t.Fatal("1.2.0 not tried")
	}
	bad.boot(t, cs, "1.1.0") // GRUB fell back to slot b
	if ev := lastEvent(fs, bad.id); ev.Event != channels.EventRolledBack || ev.Version != "1.2.0" {
		t.Fatalf("%s: last report %+v, want rolled-back 1.2.0", bad.id, ev)
	}
	doc := fs.fleet.RolloutDoc("stable")
	if v := doc.Rollouts[0]; v.State != channels.RolloutHalted || !strings.Contains(v.Reason, bad.id) {
		t.Fatalf("rollout after the rollback: %+v", v)
	}
	if !fs.downloaded("1.2.0") {
		t.Fatal("the first machine's download of 1.2.0 was not seen")
	}
	fs.mu.Lock()
	fs.got = nil
	fs.mu.Unlock()
	for _, n := range nodes[1:] {
		n.check(t)
		if n.rb.count() != 1 {
			t.Fatalf("%s took 1.2.0 from a halted rollout", n.id)
		}
		if ev := lastEvent(fs, n.id); !strings.Contains(ev.Reason, "halted") {
			t.Errorf("%s: last report %+v, want held back by the halt", n.id, ev)
		}
	}
	if fs.downloaded("1.2.0") {
		t.Fatal("a machine downloaded 1.2.0 after the halt")
	}
}

// TestReportsBestEffort: a server that is down costs the agent nothing;
// reports queue (bounded) and are dropped, never block.
func TestReportsBestEffort(t *testing.T) {
	cs := newChannelServer(t)
	cs.publish(t, "1.0.0", 1)
	cs.url = "http://127.0.0.1:1" // nothing listens
	a := cs.agent(t, t.TempDir(), "m1", "1.0.0", newFakeSlots(t, "a"), &fakeReboot{}, nil, StrategyReboot)
	r, err := NewReporter(a, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		r.Report(channels.EventChecked, "", fmt.Sprint(i))
	}
	if len(r.q) != cap(r.q) {
		t.Fatalf("queue holds %d, want %d", len(r.q), cap(r.q))
	}
	if last := <-r.q; last.Reason != fmt.Sprint(1000-cap(r.q)) {
		t.Fatalf("oldest kept report %q: the newest must be kept", last.Reason)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	cancel()
	<-done
	// The same key on the next start: the server's binding stays valid.
	r2, err := NewReporter(a, "")
	if err != nil {
		t.Fatal(err)
	}
	if !r2.key.Equal(r.key) {
		t.Fatal("report key changed between starts")
	}
	if r2.seq < r.seq || time.Unix(0, int64(r2.seq)).After(time.Now()) {
		t.Fatalf("sequence %d after %d", r2.seq, r.seq)
	}
	// A sent sequence number far ahead of the clock (the clock went back
	// after a reboot): the next start continues above it.
	ahead := uint64(time.Now().Add(time.Hour).UnixNano())
	r2.send(context.Background(), channels.Report{Machine: "m1", Channel: "stable", Running: "1.0.0", Event: channels.EventChecked, Seq: ahead})
	r3, err := NewReporter(a, "")
	if err != nil {
		t.Fatal(err)
	}
	r3.Report(channels.EventChecked, "", "")
	if got := (<-r3.q).Seq; got <= ahead {
		t.Fatalf("sequence %d after a restart, want above %d", got, ahead)
	}
}

// TestReportsWithMemberCert: a node with a cluster member certificate
// signs its reports with it; the server knows the machine as that member.
func TestReportsWithMemberCert(t *testing.T) {
	cs := newChannelServer(t)
	fs := newFleetServer(t, cs)
	cs.publish(t, "1.0.0", 1)
	dir := t.TempDir()
	ca, err := pki.Init(dir, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.IssueMember(dir, "node1", nil); err != nil {
		t.Fatal(err)
	}
	fs.fleet.ClusterCAs = x509.NewCertPool()
	fs.fleet.ClusterCAs.AddCert(ca.Cert)
	fs.fleet.RequireMember = true
	n := &testNode{id: "m1", state: t.TempDir(), slots: newFakeSlots(t, "a"), rb: &fakeReboot{}}
	n.a = cs.agent(t, n.state, n.id, "1.0.0", n.slots, n.rb, nil, StrategyReboot)
	if n.rep, err = NewReporter(n.a, ""); err != nil {
		t.Fatal(err)
	}
	n.rep.UseMemberCert(filepath.Join(dir, "missing.crt"), filepath.Join(dir, "missing.key"))
	n.check(t)
	if ev := lastEvent(fs, "m1"); ev.ID != "" {
		t.Fatalf("a key-signed report was taken by a server that requires members: %+v", ev)
	}
	n.rep.UseMemberCert(filepath.Join(dir, "node1.crt"), filepath.Join(dir, "node1.key"))
	n.check(t)
	if ev := lastEvent(fs, "m1"); ev.Member != "node1" || ev.Event != channels.EventChecked {
		t.Fatalf("last report %+v, want checked from member node1", ev)
	}
}

// TestUnhealthyReportedBeforeRollback: a node whose new release fails its
// health check says so itself, with the reason, to the channel server, and
// the report is there before the machine reboots back to the old slot.
func TestUnhealthyReportedBeforeRollback(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := newChannelServer(t)
	fs := newFleetServer(t, cs)
	cs.publish(t, "1.0.0", 1)
	n := &testNode{id: "m1", state: t.TempDir(), slots: newFakeSlots(t, "a"), rb: &fakeReboot{}}
	n.boot(t, cs, "1.0.0")
	cs.publish(t, "1.1.0", 10)
	n.check(t)
	if n.rb.count() != 1 {
		t.Fatalf("1.1.0 not applied: %d reboots", n.rb.count())
	}
	// The trial boot: the scheduled units fail.
	n.slots.running = "b"
	cs.verifyTimeout = time.Millisecond
	n.a = cs.agent(t, n.state, n.id, "1.1.0", n.slots, n.rb, nil, StrategyReboot)
	n.a.Healthy = func(ctx context.Context) error {
		<-ctx.Done()
		return fmt.Errorf("%w (last: scheduled units failed: web.service (failed/failed))", ctx.Err())
	}
	var err error
	if n.rep, err = NewReporter(n.a, ""); err != nil {
		t.Fatal(err)
	}
	go n.rep.Run(ctx)
	var atReboot channels.MachineView
	n.rb.hook = func() { atReboot = lastEvent(fs, n.id) }
	if err := n.a.AfterBoot(ctx); err != nil {
		t.Fatal(err)
	}
	if n.rb.count() != 2 {
		t.Fatalf("no rollback reboot: %d reboots", n.rb.count())
	}
	if atReboot.Event != channels.EventUnhealthy || atReboot.Version != "1.1.0" || !strings.Contains(atReboot.Reason, "web.service (failed/failed)") || !strings.Contains(atReboot.Reason, "slot b") {
		t.Fatalf("the server's last report when the rollback reboot began: %+v, want unhealthy 1.1.0 with the reason", atReboot)
	}
	if h := n.a.Status().History; !slices.ContainsFunc(h, func(e node.UpdateEvent) bool { return e.Kind == "unhealthy" && e.Version == "1.1.0" }) {
		t.Fatalf("history %+v lacks the unhealthy event", h)
	}
}

// TestHeldBackInStatus: the agent's status names the release the rollout
// holds it back from and why (not admitted yet, paused, pinned), and
// forgets it once the machine is let through.
func TestHeldBackInStatus(t *testing.T) {
	cs := newChannelServer(t)
	fs := newFleetServer(t, cs)
	cs.publish(t, "1.0.0", 1)
	n := &testNode{id: "m1", state: t.TempDir(), slots: newFakeSlots(t, "a"), rb: &fakeReboot{}}
	n.boot(t, cs, "1.0.0")
	cs.publish(t, "1.1.0", 10)
	gen := 0
	for _, tc := range []struct {
		name string
		r    channels.Rollout
		want string // "" : taken
	}{
		{"not admitted", channels.Rollout{Version: "1.1.0", Percent: 0}, "rollout of 1.1.0 at 0.0%; this machine's place is"},
		{"paused", channels.Rollout{Version: "1.1.0", Percent: 0, State: channels.RolloutPaused}, "rollout of 1.1.0 paused at 0.0%"},
		{"pinned", channels.Rollout{Version: "1.1.0", Percent: 100, Pins: map[string]string{"default": "1.0.0"}}, "group default is pinned to 1.0.0"},
		{"admitted", channels.Rollout{Version: "1.1.0", Percent: 100}, ""},
	} {
		gen++
		tc.r.Generation = gen
		fs.rollout(t, &tc.r)
		n.check(t)
		st := n.a.Status()
		switch {
		case tc.want == "" && (st.HeldBack != "" || n.rb.count() != 1):
			t.Errorf("%s: held back %q, %d reboots; want it taken", tc.name, st.HeldBack, n.rb.count())
		case tc.want != "" && (!strings.HasPrefix(st.HeldBack, tc.want) || st.Available != "1.1.0" || n.rb.count() != 0):
			t.Errorf("%s: held back %q (available %q, %d reboots), want %q...", tc.name, st.HeldBack, st.Available, n.rb.count(), tc.want)
		}
	}
}
