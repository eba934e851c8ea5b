package schedule

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/agent/units/simunits"
	"github.com/pith-os/pith/unitfile"
)

// agentSim adds simulated agents (real files, simulated systemd) to sim.
type agentSim struct {
	*sim
	agents map[string]*Agent
	sims   map[string]*simunits.Sim
}

func newAgentSim(t *testing.T, machines ...Machine) *agentSim {
	s := &agentSim{sim: newSim(t, machines...), agents: map[string]*Agent{}, sims: map[string]*simunits.Sim{}}
	for _, m := range machines {
		b, err := simunits.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		s.sims[m.ID] = b
		s.agents[m.ID] = NewAgent(m, s.store.State(), b)
	}
	return s
}

// round: agents of up machines reconcile and heartbeat, the leader
// reconciles, agents reconcile again.
func (s *agentSim) round() {
	s.t.Helper()
	for i := 0; i < 2; i++ {
		for id, a := range s.agents {
			if s.up[id] {
				_ = a.Reconcile(context.Background())
				s.live.Heartbeat(a.Heartbeat())
			}
		}
		s.reconcile()
	}
}

func (s *agentSim) running() map[string]string {
	out := map[string]string{}
	for id, b := range s.sims {
		if !s.up[id] {
			continue // a dead machine's simulated systemd keeps its copies
		}
		for _, n := range b.Active() {
			if u := s.store.State().Unit(n); u != nil && u.Global() {
				out[n] += id + " "
				continue
			}
			if prev, ok := out[n]; ok {
				s.t.Fatalf("%s running on both %s and %s", n, prev, id)
			}
			out[n] = id
		}
	}
	return out
}

func report(a *Agent, name string) UnitReport {
	for _, r := range a.Heartbeat().Units {
		if r.Name == name {
			return r
		}
	}
	return UnitReport{}
}

func TestAgentLifecycle(t *testing.T) {
	s := newAgentSim(t, mach("m1"), mach("m2"))
	s.submit("mongo@1.service", unitfile.Launched, "Conflicts=mongo@*.service")
	s.submit("mongo@2.service", unitfile.Launched, "Conflicts=mongo@*.service")
	s.submit("cache.service", unitfile.Loaded)
	s.submit("log.service", unitfile.Launched, "Global=true")
	s.round()
	run := s.running()
	if run["mongo@1.service"] == "" || run["mongo@2.service"] == "" || run["mongo@1.service"] == run["mongo@2.service"] {
		t.Fatalf("mongos running on %q and %q", run["mongo@1.service"], run["mongo@2.service"])
	}
	if run["log.service"] != "m1 m2 " && run["log.service"] != "m2 m1 " || len(s.sims["m1"].Active())+len(s.sims["m2"].Active()) != 4 {
		t.Fatalf("running: %v", run)
	}
	if _, ok := run["cache.service"]; ok {
		t.Fatal("loaded unit was started")
	}
	cm := s.where("cache.service")
	if r := report(s.agents[cm], "cache.service"); r.Current != unitfile.Loaded || r.LoadState != "loaded" || r.ActiveState != "inactive" {
		t.Fatalf("cache report %+v", r)
	}
	m1 := run["mongo@1.service"]
	if r := report(s.agents[m1], "mongo@1.service"); r.Current != unitfile.Launched || r.ActiveState != "active" || r.SubState != "running" || r.Hash != s.store.State().Unit("mongo@1.service").Hash {
		t.Fatalf("mongo@1 report %+v", r)
	}

	// Stop (launched -> loaded), then destroy.
	s.setDesired("mongo@1.service", unitfile.Loaded)
	s.round()
	if _, ok := s.running()["mongo@1.service"]; ok {
		t.Fatal("mongo@1 still running after stop")
	}
	if _, err := s.store.Propose(context.Background(), &Command{Op: OpDestroyUnit, Name: "mongo@1.service"}); err != nil {
		t.Fatal(err)
	}
	s.round()
	files, _ := s.sims[m1].List(context.Background())
	if _, ok := files["mongo@1.service"]; ok {
		t.Fatal("destroyed unit's file still on its machine")
	}

	// New contents restart the unit in place.
	m2 := s.where("mongo@2.service")
	before := len(s.sims[m2].Ops)
	opts, _ := unitfile.ParseUnitFile([]byte(unitText("Conflicts=mongo@*.service") + "\n[Service]\nEnvironment=V=2\n"))
	if _, err := s.store.Propose(context.Background(), &Command{Op: OpCreateUnit, Unit: &UnitSpec{Name: "mongo@2.service", Options: opts, Desired: unitfile.Launched}}); err != nil {
		t.Fatal(err)
	}
	s.round()
	ops := strings.Join(s.sims[m2].Ops[before:], ";")
	if ops != "load mongo@2.service;stop mongo@2.service;start mongo@2.service" {
		t.Fatalf("ops on new contents: %q", ops)
	}
}

func TestAgentFailureReportedAndMachineLoss(t *testing.T) {
	s := newAgentSim(t, mach("m1"), mach("m2"))
	opts, _ := unitfile.ParseUnitFile([]byte("[Service]\nExecStart=/bin/false\n"))
	if _, err := s.store.Propose(context.Background(), &Command{Op: OpCreateUnit, Unit: &UnitSpec{Name: "bad.service", Options: opts, Desired: unitfile.Launched}}); err != nil {
		t.Fatal(err)
	}
	s.submit("good.service", unitfile.Launched)
	s.round()
	bm := s.where("bad.service")
	if r := report(s.agents[bm], "bad.service"); r.Current != unitfile.Loaded || r.ActiveState != "failed" || !strings.Contains(r.Error, "failed") {
		t.Fatalf("bad report %+v", r)
	}
	gm := s.where("good.service")
	s.up[gm] = false
	for i := 0; i < 7; i++ {
		s.clock.Advance(time.Second)
		s.round()
	}
	if now := s.running()["good.service"]; now == "" || now == gm {
		t.Fatalf("good.service on %q after %s died", now, gm)
	}
}

func TestAgentRestartAdoptsRunningUnits(t *testing.T) {
	s := newAgentSim(t, mach("m1"))
	s.submit("a.service", unitfile.Launched)
	s.round()
	before := len(s.sims["m1"].Ops)
	// A fresh agent process over the same backend does not restart it.
	s.agents["m1"] = NewAgent(*s.ms["m1"], s.store.State(), s.sims["m1"])
	s.round()
	if ops := s.sims["m1"].Ops[before:]; len(ops) != 0 {
		t.Fatalf("restarted agent did %v", ops)
	}
	if r := report(s.agents["m1"], "a.service"); r.Current != unitfile.Launched {
		t.Fatalf("adopted report %+v", r)
	}
}

// New contents that arrive while the agent is down must still restart the
// running unit: a bare start of an active unit leaves the old version up.
func TestAgentRestartWithChangedContentsRestartsUnit(t *testing.T) {
	s := newAgentSim(t, mach("m1"))
	s.submit("a.service", unitfile.Launched)
	s.round()
	s.agents["m1"] = NewAgent(*s.ms["m1"], s.store.State(), s.sims["m1"])
	opts, _ := unitfile.ParseUnitFile([]byte(unitText() + "\n[Service]\nEnvironment=V=2\n"))
	if _, err := s.store.Propose(context.Background(), &Command{Op: OpCreateUnit, Unit: &UnitSpec{Name: "a.service", Options: opts, Desired: unitfile.Launched}}); err != nil {
		t.Fatal(err)
	}
	before := len(s.sims["m1"].Ops)
	s.round()
	if ops := strings.Join(s.sims["m1"].Ops[before:], ";"); ops != "load a.service;stop a.service;start a.service" {
		t.Fatalf("ops on new contents after an agent restart: %q", ops)
	}
	if r := report(s.agents["m1"], "a.service"); r.Current != unitfile.Launched || r.Hash != s.store.State().Unit("a.service").Hash {
		t.Fatalf("report %+v", r)
	}
}

// slowStart is a backend whose Start blocks until released, like systemd
// starting a unit whose dependencies take minutes.
type slowStart struct {
	UnitBackend
	entered chan string
	release chan struct{}
}

func (b *slowStart) Start(ctx context.Context, name string) error {
	b.entered <- name
	<-b.release
	return b.UnitBackend.Start(ctx, name)
}

// A reconcile stuck in systemd must not silence the machine: the leader
// would declare it dead after one TTL and move its units while they start.
func TestAgentHeartbeatsWhileReconcileBlocks(t *testing.T) {
	s := newAgentSim(t, mach("m1"))
	b := &slowStart{UnitBackend: s.sims["m1"], entered: make(chan string, 1), release: make(chan struct{})}
	a := NewAgent(*s.ms["m1"], s.store.State(), b)
	beats := make(chan Heartbeat, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx, 5*time.Millisecond, func(hb Heartbeat) {
			select {
			case beats <- hb:
			default:
			}
		}, nil)
	}()
	var once sync.Once
	release := func() { once.Do(func() { close(b.release) }) }
	defer func() { release(); cancel(); <-done }()
	s.submit("slow.service", unitfile.Launched)
	s.reconcile()                        // the engine places it on m1; the agent starts it
	guard := time.After(2 * time.Minute) // only against a hang, not a speed limit
	select {
	case <-b.entered:
	case <-guard:
		t.Fatal("the agent never started slow.service")
	}
	for n := 0; n < 3; {
		select {
		case <-beats:
			n++
		case <-guard:
			t.Fatalf("%d heartbeats while Start blocked, want 3", n)
		}
	}
	release()
	for {
		select {
		case hb := <-beats:
			for _, r := range hb.Units {
				if r.Name == "slow.service" && r.Current == unitfile.Launched && r.ActiveState == "active" {
					return
				}
			}
		case <-guard:
			t.Fatal("no heartbeat reported slow.service launched after Start returned")
		}
	}
}
