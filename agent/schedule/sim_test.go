package schedule

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/unitfile"
)

// sim is an in-process cluster: a MemStore, a leader engine with a fake
// clock, and simulated agents that heartbeat while "up".
type sim struct {
	t     testing.TB
	clock *FakeClock
	store *MemStore
	live  *Liveness
	eng   *Engine
	ms    map[string]*Machine
	up    map[string]bool
}

func newSim(t testing.TB, machines ...Machine) *sim {
	s := &sim{t: t, clock: NewFakeClock(), store: NewMemStore(), ms: map[string]*Machine{}, up: map[string]bool{}}
	s.live = NewLiveness(s.clock.Now, DefaultTTL)
	s.eng = &Engine{Store: s.store, Live: s.live, Term: 1}
	for i := range machines {
		m := machines[i]
		s.ms[m.ID] = &m
		s.up[m.ID] = true
	}
	s.beat()
	s.reconcile()
	return s
}

func mach(id string, md ...string) Machine {
	m := Machine{ID: id, PublicIP: "10.0.0." + id[len(id)-1:], Metadata: map[string]string{}}
	for _, kv := range md {
		k, v, _ := strings.Cut(kv, "=")
		m.Metadata[k] = v
	}
	return m
}

func (s *sim) beat() {
	for id, up := range s.up {
		if up {
			s.live.Heartbeat(Heartbeat{Machine: *s.ms[id]})
		}
	}
}

func (s *sim) reconcile() ReconcileStats {
	s.t.Helper()
	st, err := s.eng.Reconcile(context.Background())
	if err != nil {
		s.t.Fatalf("reconcile: %v", err)
	}
	s.check()
	return st
}

// pass lets d of simulated time go by in heartbeat-sized steps, with up
// machines heartbeating and the leader reconciling at each step.
func (s *sim) pass(d time.Duration) {
	s.t.Helper()
	for step := time.Duration(0); step < d; step += time.Second {
		s.clock.Advance(time.Second)
		s.beat()
		s.reconcile()
	}
}

func (s *sim) submit(name string, desired unitfile.DesiredState, xfleet ...string) {
	s.t.Helper()
	if err := s.trySubmit(name, desired, xfleet...); err != nil {
		s.t.Fatalf("submit %s: %v", name, err)
	}
}

func unitText(xfleet ...string) string {
	var b strings.Builder
	b.WriteString("[Unit]\nDescription=test\n\n[Service]\nExecStart=/bin/sleep infinity\n")
	if len(xfleet) > 0 {
		b.WriteString("\n[X-Fleet]\n")
		for _, l := range xfleet {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func (s *sim) trySubmit(name string, desired unitfile.DesiredState, xfleet ...string) error {
	opts, err := unitfile.ParseUnitFile([]byte(unitText(xfleet...)))
	if err != nil {
		return err
	}
	_, err = s.store.Propose(context.Background(), &Command{Op: OpCreateUnit, Unit: &UnitSpec{Name: name, Options: opts, Desired: desired}})
	return err
}

func (s *sim) setDesired(name string, d unitfile.DesiredState) {
	s.t.Helper()
	if _, err := s.store.Propose(context.Background(), &Command{Op: OpSetDesired, Name: name, Desired: d}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *sim) where(name string) string {
	u := s.store.State().Unit(name)
	if u == nil {
		s.t.Fatalf("unit %s missing", name)
	}
	return u.Machine
}

func (s *sim) reason(name string) string { return s.store.State().Unit(name).Reason }

// check asserts invariants that hold after every reconcile.
func (s *sim) check() {
	s.t.Helper()
	st := s.store.State()
	on := map[string][]*Unit{}
	for _, u := range st.Units() {
		if u.Machine == "" {
			continue
		}
		if u.Desired == unitfile.Inactive {
			s.t.Fatalf("inactive unit %s is on %s", u.Name, u.Machine)
		}
		if u.Global() {
			s.t.Fatalf("global unit %s was scheduled to %s", u.Name, u.Machine)
		}
		m := st.Machine(u.Machine)
		if m == nil {
			s.t.Fatalf("unit %s on unknown machine %s", u.Name, u.Machine)
		}
		if !u.req.MatchesMetadata(m.Metadata) {
			s.t.Fatalf("unit %s on %s which does not match its metadata", u.Name, u.Machine)
		}
		if u.req.MachineID != "" && u.req.MachineID != u.Machine {
			s.t.Fatalf("unit %s on %s, MachineID says %s", u.Name, u.Machine, u.req.MachineID)
		}
		on[u.Machine] = append(on[u.Machine], u)
	}
	for m, us := range on {
		for i := range us {
			for j := i + 1; j < len(us); j++ {
				if conflicts(us[i], us[j]) || conflicts(us[j], us[i]) {
					s.t.Fatalf("conflicting units %s and %s both on %s", us[i].Name, us[j].Name, m)
				}
			}
		}
	}
}

func (s *sim) count(m string) int {
	n := 0
	for _, u := range s.store.State().Units() {
		if u.Machine == m {
			n++
		}
	}
	return n
}

func names(us []*Unit) string {
	var n []string
	for _, u := range us {
		n = append(n, u.Name)
	}
	return strings.Join(n, ",")
}

func TestLeastLoadedSpread(t *testing.T) {
	s := newSim(t, mach("m1"), mach("m2"), mach("m3"))
	for i := 0; i < 9; i++ {
		s.submit(fmt.Sprintf("web%d.service", i), unitfile.Launched)
	}
	s.reconcile()
	for _, m := range []string{"m1", "m2", "m3"} {
		if n := s.count(m); n != 3 {
			t.Errorf("%s has %d units, want 3", m, n)
		}
	}
	// Steady state: nothing more to write.
	if st := s.reconcile(); st.Commands != 0 {
		t.Errorf("steady-state reconcile proposed %d commands, want 0", st.Commands)
	}
}

func TestOptions(t *testing.T) {
	type unit struct {
		name   string
		xfleet []string
	}
	tests := []struct {
		name     string
		machines []Machine
		units    []unit
		want     map[string]string // unit -> machine ("" = unplaced)
		reason   map[string]string // unit -> substring of its reason
	}{
		{
			name:     "MachineID",
			machines: []Machine{mach("m1"), mach("m2"), mach("m3")},
			units:    []unit{{"a.service", []string{"MachineID=m2"}}, {"b.service", []string{"MachineID=m9"}}},
			want:     map[string]string{"a.service": "m2", "b.service": ""},
			reason:   map[string]string{"b.service": "required machine m9 is not live"},
		},
		{
			name:     "MachineOf follows its peer",
			machines: []Machine{mach("m1"), mach("m2"), mach("m3")},
			units: []unit{
				{"x.service", nil}, {"y.service", nil},
				{"z.service", []string{"MachineOf=y.service"}},
				{"w.service", []string{"MachineOf=nope.service"}},
			},
			want:   map[string]string{"x.service": "m1", "y.service": "m2", "z.service": "m2", "w.service": ""},
			reason: map[string]string{"w.service": "MachineOf unit nope.service is not scheduled"},
		},
		{
			name:     "MachineOf with specifier",
			machines: []Machine{mach("m1"), mach("m2")},
			units:    []unit{{"a.service", nil}, {"b.socket", nil}, {"b.service", []string{"MachineOf=%p.socket"}}},
			want:     map[string]string{"a.service": "m1", "b.socket": "m2", "b.service": "m2"},
		},
		{
			name:     "MachineMetadata keys AND, values OR",
			machines: []Machine{mach("m1", "region=us", "disk=hdd"), mach("m2", "region=eu", "disk=ssd"), mach("m3", "region=us", "disk=ssd")},
			units: []unit{
				{"a.service", []string{`MachineMetadata="region=us" "disk=ssd"`}},
				{"b.service", []string{"MachineMetadata=region=eu", "MachineMetadata=region=ap"}},
				{"c.service", []string{"MachineMetadata=region=ap"}},
				{"d.service", []string{"MachineMetadata=region=us", "MachineMetadata=disk=ssd"}},
			},
			want:   map[string]string{"a.service": "m3", "b.service": "m2", "c.service": "", "d.service": "m3"},
			reason: map[string]string{"c.service": "3 do not match MachineMetadata"},
		},
		{
			name:     "Conflicts glob",
			machines: []Machine{mach("m1"), mach("m2")},
			units: []unit{
				{"mongo@1.service", []string{"Conflicts=mongo@*.service"}},
				{"mongo@2.service", []string{"Conflicts=mongo@*.service"}},
				{"mongo@3.service", []string{"Conflicts=mongo@*.service"}},
			},
			want:   map[string]string{"mongo@1.service": "m1", "mongo@2.service": "m2", "mongo@3.service": ""},
			reason: map[string]string{"mongo@3.service": "2 host a conflicting unit"},
		},
		{
			name:     "others' Conflicts keep a plain unit away",
			machines: []Machine{mach("m1"), mach("m2")},
			units: []unit{
				{"a.service", []string{"Conflicts=b.service"}},
				{"b.service", nil},
				{"c.service", nil},
			},
			want: map[string]string{"a.service": "m1", "b.service": "m2", "c.service": "m1"},
		},
		{
			name:     "Replaces evicts the replaced unit",
			machines: []Machine{mach("m1"), mach("m2")},
			units: []unit{
				{"old.service", []string{"MachineID=m1"}},
				{"new.service", []string{"MachineID=m1", "Replaces=old.service"}},
			},
			// old is pinned to m1, so once evicted it cannot go anywhere.
			want:   map[string]string{"new.service": "m1", "old.service": ""},
			reason: map[string]string{"old.service": "new.service"},
		},
		{
			name:     "Replaces moves an unpinned unit elsewhere",
			machines: []Machine{mach("m1"), mach("m2")},
			units: []unit{
				{"old.service", nil},
				{"new.service", []string{"MachineID=m1", "Replaces=old.service"}},
			},
			want: map[string]string{"new.service": "m1", "old.service": "m2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, tc.machines...)
			for _, u := range tc.units {
				s.submit(u.name, unitfile.Launched, u.xfleet...)
				s.reconcile()
			}
			s.reconcile()
			for u, m := range tc.want {
				if got := s.where(u); got != m {
					t.Errorf("%s on %q, want %q (reason %q)", u, got, m, s.reason(u))
				}
			}
			for u, r := range tc.reason {
				if got := s.reason(u); !strings.Contains(got, r) {
					t.Errorf("%s reason %q, want it to mention %q", u, got, r)
				}
			}
			if st := s.reconcile(); st.Commands != 0 {
				t.Errorf("not settled: second reconcile proposed %d commands", st.Commands)
			}
		})
	}
}

func TestTemplateInstances(t *testing.T) {
	s := newSim(t, mach("m1"), mach("m2"))
	if err := s.trySubmit("mongo@.service", unitfile.Launched, "Conflicts=%p@*.service"); err == nil {
		t.Fatal("launching a template was accepted")
	}
	s.submit("mongo@.service", unitfile.Inactive, "Conflicts=%p@*.service")
	tmpl := s.store.State().Unit("mongo@.service")
	for _, n := range []string{"mongo@1.service", "mongo@2.service"} {
		if _, err := s.store.Propose(context.Background(), &Command{Op: OpCreateUnit, Unit: &UnitSpec{Name: n, Options: tmpl.Options, Desired: unitfile.Launched}}); err != nil {
			t.Fatal(err)
		}
	}
	s.reconcile()
	a, b := s.where("mongo@1.service"), s.where("mongo@2.service")
	if a == "" || b == "" || a == b {
		t.Fatalf("instances on %q and %q, want two different machines", a, b)
	}
	if s.where("mongo@.service") != "" {
		t.Fatal("template was scheduled")
	}
}

func TestGlobalJoinLeave(t *testing.T) {
	s := newSim(t, mach("m1", "role=web"), mach("m2", "role=db"))
	s.submit("log.service", unitfile.Launched, "Global=true")
	s.submit("webagent.service", unitfile.Launched, "Global=true", "MachineMetadata=role=web")
	s.reconcile()
	st := s.store.State()
	assigned := func(id string) string { return names(st.Assigned(id)) }
	if got := assigned("m1"); got != "log.service,webagent.service" {
		t.Errorf("m1 runs %q", got)
	}
	if got := assigned("m2"); got != "log.service" {
		t.Errorf("m2 runs %q", got)
	}
	// A machine joins.
	m3 := mach("m3", "role=web")
	s.ms["m3"], s.up["m3"] = &m3, true
	s.pass(time.Second)
	if got := assigned("m3"); got != "log.service,webagent.service" {
		t.Errorf("joined m3 runs %q", got)
	}
	// Metadata changes on m1: the web global leaves it.
	s.ms["m1"].Metadata = map[string]string{"role": "db"}
	s.pass(time.Second)
	if got := assigned("m1"); got != "log.service" {
		t.Errorf("m1 after metadata change runs %q", got)
	}
	// Stopping the global removes it everywhere.
	s.setDesired("log.service", unitfile.Inactive)
	if got := assigned("m2"); got != "" {
		t.Errorf("m2 after stopping global runs %q", got)
	}
}

func TestMetadataChangeMovesUnit(t *testing.T) {
	s := newSim(t, mach("m1", "disk=ssd"), mach("m2", "disk=hdd"))
	s.submit("db.service", unitfile.Launched, "MachineMetadata=disk=ssd")
	s.reconcile()
	if s.where("db.service") != "m1" {
		t.Fatal("db not on m1")
	}
	s.ms["m1"].Metadata = map[string]string{"disk": "hdd"}
	s.ms["m2"].Metadata = map[string]string{"disk": "ssd"}
	s.pass(time.Second)
	if got := s.where("db.service"); got != "m2" {
		t.Fatalf("db on %q after metadata swap, want m2", got)
	}
}

func TestDeadMachineRescheduleAndNoStealBack(t *testing.T) {
	s := newSim(t, mach("m1"), mach("m2"), mach("m3"))
	for i := 0; i < 6; i++ {
		s.submit(fmt.Sprintf("u%d.service", i), unitfile.Launched)
	}
	s.submit("pinned.service", unitfile.Launched, "MachineID=m1")
	s.reconcile()
	var onM1 []string
	for _, u := range s.store.State().Units() {
		if u.Machine == "m1" {
			onM1 = append(onM1, u.Name)
		}
	}
	s.up["m1"] = false
	// Within the TTL nothing moves.
	s.pass(DefaultTTL)
	for _, n := range onM1 {
		if s.where(n) != "m1" {
			t.Fatalf("%s moved off m1 before the TTL expired", n)
		}
	}
	s.pass(time.Second)
	for _, n := range onM1 {
		got := s.where(n)
		if n == "pinned.service" {
			if got != "" || !strings.Contains(s.reason(n), "m1 is not live") {
				t.Errorf("pinned unit on %q reason %q", got, s.reason(n))
			}
			continue
		}
		if got == "m1" || got == "" {
			t.Errorf("%s on %q after m1 died", n, got)
		}
	}
	// m1 comes back: nothing steals back except the pinned unit, which
	// waits out the rejoin hold-down.
	before := map[string]string{}
	for _, u := range s.store.State().Units() {
		before[u.Name] = u.Machine
	}
	s.up["m1"] = true
	s.pass(time.Second)
	for n, m := range before {
		if n != "pinned.service" && s.where(n) != m {
			t.Errorf("%s moved from %s to %s when m1 returned", n, m, s.where(n))
		}
	}
	if s.where("pinned.service") != "" || !strings.Contains(s.reason("pinned.service"), "held down") {
		t.Errorf("pinned placed during hold-down: on %q, reason %q", s.where("pinned.service"), s.reason("pinned.service"))
	}
	s.pass(DefaultTTL)
	if s.where("pinned.service") != "m1" {
		t.Errorf("pinned not back on m1 after hold-down: %q", s.reason("pinned.service"))
	}
}

func TestFlappingMachine(t *testing.T) {
	s := newSim(t, mach("m1"), mach("m2"))
	s.submit("a.service", unitfile.Launched)
	s.submit("b.service", unitfile.Launched)
	s.reconcile()
	moves := 0
	last := map[string]string{"a.service": s.where("a.service"), "b.service": s.where("b.service")}
	// m1 flaps: down 6 s, up 2 s, ten times.
	for i := 0; i < 10; i++ {
		s.up["m1"] = false
		s.pass(6 * time.Second)
		s.up["m1"] = true
		s.pass(2 * time.Second)
		for n, m := range last {
			if now := s.where(n); now != m {
				moves++
				last[n] = now
			}
		}
	}
	// Only the first death moves the unit that was on m1; afterwards
	// everything stays on m2 (m1 never outlives its hold-down).
	if moves != 1 {
		t.Errorf("%d moves while m1 flapped, want 1", moves)
	}
	if s.count("m1") != 0 {
		t.Errorf("flapping m1 holds %d units", s.count("m1"))
	}
}

func TestNewLeaderGrace(t *testing.T) {
	s := newSim(t, mach("m1"), mach("m2"))
	s.submit("a.service", unitfile.Launched, "MachineID=m1")
	s.submit("b.service", unitfile.Launched)
	s.reconcile()
	// A new leader: fresh liveness table. m1 has gone silent, m2 beats.
	s.up["m1"] = false
	s.live = NewLiveness(s.clock.Now, DefaultTTL)
	s.eng = &Engine{Store: s.store, Live: s.live, Term: 2}
	s.pass(DefaultTTL - time.Second)
	if s.where("a.service") != "m1" {
		t.Fatal("new leader declared m1 dead before waiting one TTL")
	}
	s.pass(2 * time.Second)
	if s.where("a.service") != "" {
		t.Fatal("m1 not declared dead after the new leader's TTL")
	}
}

func TestLeaderChangeMidReconcile(t *testing.T) {
	s := newSim(t, mach("m1"), mach("m2"))
	s.submit("a.service", unitfile.Launched, "Conflicts=b.service")
	s.submit("b.service", unitfile.Launched)
	// The old leader (term 1) plans but is slow to commit; meanwhile a new
	// leader (term 2) with a different view places the units.
	oldPlan, _ := s.eng.Plan()
	if len(oldPlan) != 2 {
		t.Fatalf("old leader planned %d placements, want 2", len(oldPlan))
	}
	newEng := &Engine{Store: s.store, Live: s.live, Term: 2}
	// The new leader hears only from m1 at first (as far as it knows m2 is
	// unknown): it places a on m1 and cannot place b (conflict).
	s.eng = newEng
	live2 := NewLiveness(s.clock.Now, DefaultTTL)
	live2.Heartbeat(Heartbeat{Machine: *s.ms["m1"]})
	newEng.Live = live2
	if _, err := newEng.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := s.store.Propose(context.Background(), &Command{Op: OpPlace, Term: 1, Placements: oldPlan})
	if err != ErrStaleTerm {
		t.Fatalf("stale leader's batch: err %v, want ErrStaleTerm", err)
	}
	s.check()
	if s.where("a.service") != "m1" || s.where("b.service") != "" {
		t.Fatalf("a on %q, b on %q", s.where("a.service"), s.where("b.service"))
	}
	// Interleaving inside Propose: the new leader commits while the old
	// one's command is in flight.
	s.setDesired("a.service", unitfile.Inactive)
	s.setDesired("a.service", unitfile.Launched)
	stale, _ := (&Engine{Store: s.store, Live: s.live, Term: 1}).Plan()
	fired := false
	s.store.Hook = func(c *Command) {
		if c.Op == OpPlace && c.Term == 1 && !fired {
			fired = true
			if _, err := newEng.Reconcile(context.Background()); err != nil {
				t.Error(err)
			}
		}
	}
	if _, err := s.store.Propose(context.Background(), &Command{Op: OpPlace, Term: 1, Placements: stale}); err != ErrStaleTerm {
		t.Fatalf("interleaved stale batch: %v", err)
	}
	s.store.Hook = nil
	s.check()
}

func TestInactiveUnschedules(t *testing.T) {
	s := newSim(t, mach("m1"))
	s.submit("a.service", unitfile.Launched)
	s.reconcile()
	s.setDesired("a.service", unitfile.Inactive)
	if got := s.where("a.service"); got != "" {
		t.Fatalf("inactive unit still on %q", got)
	}
	s.setDesired("a.service", unitfile.Loaded)
	s.reconcile()
	if got := s.where("a.service"); got != "m1" {
		t.Fatalf("loaded unit on %q", got)
	}
	if got := names(s.store.State().Assigned("m1")); got != "a.service" {
		t.Fatalf("m1 assigned %q", got)
	}
}

func TestMachineOfFollowsPeerOnDeath(t *testing.T) {
	s := newSim(t, mach("m1"), mach("m2"))
	s.submit("db.service", unitfile.Launched)
	s.submit("backup.service", unitfile.Launched, "MachineOf=db.service")
	s.reconcile()
	m := s.where("db.service")
	if s.where("backup.service") != m {
		t.Fatal("follower not with peer")
	}
	s.up[m] = false
	s.pass(DefaultTTL + time.Second)
	if n := s.where("db.service"); n == m || n == "" || s.where("backup.service") != n {
		t.Fatalf("after %s died: db on %q, backup on %q", m, n, s.where("backup.service"))
	}
}

func TestLivenessChangedAndStatus(t *testing.T) {
	clock := NewFakeClock()
	l := NewLiveness(clock.Now, DefaultTTL)
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	ch := l.Changed()
	l.Heartbeat(Heartbeat{Machine: mach("m1")})
	if !closed(ch) {
		t.Fatal("new machine did not signal")
	}
	ch = l.Changed()
	clock.Advance(time.Second)
	l.Heartbeat(Heartbeat{Machine: mach("m1")})
	if closed(ch) {
		t.Fatal("routine heartbeat signalled")
	}
	l.Heartbeat(Heartbeat{Machine: mach("m1", "disk=ssd")})
	if !closed(ch) {
		t.Fatal("metadata change did not signal")
	}
	if l.Status("m1") != Alive || l.Status("m2") != Unknown {
		t.Fatalf("status m1 %v m2 %v", l.Status("m1"), l.Status("m2"))
	}
	clock.Advance(DefaultTTL + time.Second)
	if l.Status("m1") != Dead || l.Status("m2") != Dead || l.Placeable("m1") {
		t.Fatalf("after TTL: m1 %v m2 %v", l.Status("m1"), l.Status("m2"))
	}
	ch = l.Changed()
	l.Heartbeat(Heartbeat{Machine: mach("m1", "disk=ssd")})
	if !closed(ch) || l.Status("m1") != Alive || l.Placeable("m1") {
		t.Fatal("return: no signal, or placeable during hold-down")
	}
	if len(l.Live()) != 1 || len(l.Reports()) != 1 {
		t.Fatalf("live %v", l.Live())
	}
}

func TestForgetDeadEmptyMachines(t *testing.T) {
	s := newSim(t, mach("m1"), mach("m2"))
	s.eng.ForgetAfter = time.Minute
	s.submit("pinned.service", unitfile.Launched, "MachineID=m2")
	s.reconcile()
	s.up["m1"], s.up["m2"] = false, false
	m3 := mach("m3")
	s.ms["m3"], s.up["m3"] = &m3, true
	s.pass(30 * time.Second)
	if len(s.store.State().Machines()) != 3 {
		t.Fatal("machines forgotten before ForgetAfter")
	}
	s.pass(40 * time.Second)
	var ids []string
	for _, m := range s.store.State().Machines() {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "m3" {
		t.Fatalf("machines after forget: %v", ids)
	}
	if st := s.reconcile(); st.Commands != 0 {
		t.Fatalf("forgetting is not settled: %d commands", st.Commands)
	}
	// m2 returns: registered again, and its pinned unit goes back after
	// the rejoin hold-down.
	s.up["m2"] = true
	s.pass(DefaultTTL + time.Second)
	if s.where("pinned.service") != "m2" || s.store.State().Machine("m2") == nil {
		t.Fatalf("pinned on %q after m2 returned: %s", s.where("pinned.service"), s.reason("pinned.service"))
	}
}
