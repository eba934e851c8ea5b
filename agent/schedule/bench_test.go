package schedule

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pith-os/pith/unitfile"
)

// benchCluster builds N machines and M launched units (every twentieth unit a
// mongo-style instance with Conflicts, every fifth with MachineMetadata)
// against the in-memory store.
func benchCluster(b *testing.B, n, m int) *sim {
	s := &sim{t: b, clock: NewFakeClock(), store: NewMemStore(), ms: map[string]*Machine{}, up: map[string]bool{}}
	s.live = NewLiveness(s.clock.Now, DefaultTTL)
	s.eng = &Engine{Store: s.store, Live: s.live, Term: 1}
	zones := []string{"a", "b", "c"}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("machine%05d", i)
		s.ms[id] = &Machine{ID: id, PublicIP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Metadata: map[string]string{"zone": zones[i%3]}}
		s.up[id] = true
	}
	plain, _ := unitfile.ParseUnitFile([]byte(unitText()))
	conf, _ := unitfile.ParseUnitFile([]byte(unitText("Conflicts=db@*.service")))
	meta, _ := unitfile.ParseUnitFile([]byte(unitText("MachineMetadata=zone=a", "MachineMetadata=zone=b")))
	ctx := context.Background()
	for i := 0; i < m; i++ {
		spec := &UnitSpec{Name: fmt.Sprintf("app%05d.service", i), Options: plain, Desired: unitfile.Launched}
		switch {
		case i%20 == 0:
			spec = &UnitSpec{Name: fmt.Sprintf("db@%d.service", i), Options: conf, Desired: unitfile.Launched}
		case i%5 == 0:
			spec.Options = meta
		}
		if _, err := s.store.Propose(ctx, &Command{Op: OpCreateUnit, Unit: spec}); err != nil {
			b.Fatal(err)
		}
	}
	s.beat()
	return s
}

func unplaced(s *sim) int {
	n := 0
	for _, u := range s.store.State().Units() {
		if u.Machine == "" {
			n++
		}
	}
	return n
}

func benchSchedule(b *testing.B, n, m int) {
	b.ReportAllocs()
	var commands int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := benchCluster(b, n, m)
		b.StartTimer()
		st, err := s.eng.Reconcile(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		commands = st.Commands
		b.StopTimer()
		if u := unplaced(s); u != 0 {
			b.Fatalf("%d units unplaced", u)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(commands), "commands/op")
}

// BenchmarkScheduleAll: time to register N machines and place M units from
// nothing (one reconcile, placements batched 1000 per command).
func BenchmarkScheduleAll(b *testing.B) {
	for _, c := range []struct{ n, m int }{{100, 1000}, {1000, 10000}} {
		b.Run(fmt.Sprintf("machines=%d/units=%d", c.n, c.m), func(b *testing.B) { benchSchedule(b, c.n, c.m) })
	}
}

// BenchmarkReschedule10pct: time for the reconcile that moves every unit
// off 10% of machines once they are declared dead.
func BenchmarkReschedule10pct(b *testing.B) {
	for _, c := range []struct{ n, m int }{{100, 1000}, {1000, 10000}} {
		b.Run(fmt.Sprintf("machines=%d/units=%d", c.n, c.m), func(b *testing.B) {
			b.ReportAllocs()
			moved := 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s := benchCluster(b, c.n, c.m)
				if _, err := s.eng.Reconcile(context.Background()); err != nil {
					b.Fatal(err)
				}
				k := 0
				for id := range s.up {
					if k%10 == 0 {
						s.up[id] = false
					}
					k++
				}
				// Up machines keep beating; the dead ones expire.
				s.clock.Advance(DefaultTTL / 2)
				s.beat()
				s.clock.Advance(DefaultTTL/2 + time.Second)
				s.beat()
				b.StartTimer()
				st, err := s.eng.Reconcile(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				moved = st.Moved
				b.StopTimer()
				for _, u := range s.store.State().Units() {
					if u.Machine == "" || !s.up[u.Machine] {
						b.Fatalf("%s on %q after reschedule (%s)", u.Name, u.Machine, u.Reason)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(moved), "moved/op")
		})
	}
}

// BenchmarkSteadyState: a reconcile with nothing to do (what the leader
// pays every interval); it must propose nothing.
func BenchmarkSteadyState(b *testing.B) {
	s := benchCluster(b, 1000, 10000)
	if _, err := s.eng.Reconcile(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := s.eng.Reconcile(context.Background())
		if err != nil || st.Commands != 0 {
			b.Fatalf("steady state: %v, %d commands", err, st.Commands)
		}
	}
}
