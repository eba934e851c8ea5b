package e2e

import (
	"slices"
	"testing"
	"time"
)

// TestSlotPool: waiting requests are granted in rank (more slots, then
// longer, then by name), a request for more slots than the pool has takes
// them all, a request that fits may pass a first-ranked one that does not
// only if it ends before that one could start, and no more slots are ever
// out than the pool has. Each step lets requests arrive (those with that
// step's number; step 0's arrive together at the start), releases one
// holder ("" for none) and lists what is granted then.
func TestSlotPool(t *testing.T) {
	type req struct {
		name    string
		n       int
		typical time.Duration
		step    int // the step it arrives at
	}
	type step struct {
		release string
		grants  []string
	}
	for _, tc := range []struct {
		name  string
		size  int
		reqs  []req
		steps []step
	}{
		{"cluster first, then one-guest tests in pairs", 2,
			[]req{{"EC2", 1, 2 * time.Minute, 0}, {"Demo", 3, 18 * time.Minute, 0}, {"OEM", 1, 3 * time.Minute, 0}, {"Update", 1, 14 * time.Minute, 0}, {"FirstBoot", 3, 6 * time.Minute, 0}},
			[]step{{"", []string{"Demo"}}, {"Demo", []string{"FirstBoot"}}, {"FirstBoot", []string{"Update", "OEM"}}, {"OEM", []string{"EC2"}}, {"EC2", nil}, {"Update", nil}}},
		{"one slot: one test at a time, ties by name", 1,
			[]req{{"C", 1, 5 * time.Minute, 0}, {"B", 2, time.Minute, 0}, {"A", 1, 5 * time.Minute, 0}},
			[]step{{"", []string{"A"}}, {"A", []string{"C"}}, {"C", []string{"B"}}, {"B", nil}}},
		{"a short test fills what the long one leaves", 4,
			[]req{{"E", 1, 2 * time.Minute, 0}, {"U", 2, 14 * time.Minute, 0}, {"Demo", 3, 18 * time.Minute, 0}},
			[]step{{"", []string{"Demo", "E"}}, {"E", nil}, {"Demo", []string{"U"}}, {"U", nil}}},
		// The last run's defect: a cluster test arriving while one-guest
		// tests hold the slots waited for every one-guest test behind it.
		{"a late cluster test is not starved by one-guest tests", 2,
			[]req{{"A", 1, 10 * time.Minute, 0}, {"B", 1, 10 * time.Minute, 0},
				{"Demo", 3, 18 * time.Minute, 1}, {"Short", 1, time.Minute, 1}, {"Long", 1, 30 * time.Minute, 1}},
			[]step{{"", []string{"A", "B"}}, {"A", []string{"Short"}}, {"Short", nil}, {"B", []string{"Demo"}}, {"Demo", []string{"Long"}}, {"Long", nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newSlotPool(tc.size)
			release := map[string]chan struct{}{}
			size := map[string]int{}
			for _, r := range tc.reqs {
				release[r.name] = make(chan struct{})
				size[r.name] = min(r.n, tc.size)
			}
			arrive := func(step int) int {
				n := 0
				for _, r := range tc.reqs {
					if r.step != step {
						continue
					}
					n++
					go func() {
						sr := &slotRequest{name: r.name, n: r.n, typical: r.typical}
						p.acquire(sr)
						<-release[r.name]
						p.release(sr)
					}()
				}
				return n
			}
			holding := map[string]bool{}
			granted, released, arrived := 0, 0, 0
			for i, s := range tc.steps {
				arrived += arrive(i)
				if s.release != "" {
					if !holding[s.release] {
						t.Fatalf("step releases %s, which holds no slots", s.release)
					}
					close(release[s.release])
					delete(holding, s.release)
					released++
				}
				// Settled: the release is counted, every request that
				// arrived and is not released holds or waits, and none
				// that waits is due.
				for {
					p.mu.Lock()
					got := slices.Clone(p.granted[granted:])
					used := 0
					for name := range holding {
						used += size[name]
					}
					for _, name := range got {
						used += size[name]
					}
					free := p.free
					settled := !time.Now().Before(p.opens) && len(p.waiting)+len(holding)+len(got) == arrived-released &&
						p.next() == nil && free == tc.size-used
					p.mu.Unlock()
					if free < 0 {
						t.Fatalf("%d slots free: more granted than the pool has", free)
					}
					if settled {
						if !slices.Equal(got, s.grants) {
							t.Fatalf("after releasing %q: granted %v, want %v (all grants: %v)", s.release, got, s.grants, p.granted)
						}
						for _, name := range got {
							holding[name] = true
						}
						granted += len(got)
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.waiting) != 0 || len(p.granted) != len(tc.reqs) || p.free != tc.size {
				t.Errorf("after all steps: waiting %d, granted %v, %d of %d slots free", len(p.waiting), p.granted, p.free, tc.size)
			}
		})
	}
}

// TestSlotPoolShrink: a test that gives back slots (FewerVMs) lets a
// waiting one start before it ends; a shrink never raises a hold, and the
// slots add up again once both end.
func TestSlotPoolShrink(t *testing.T) {
	p := newSlotPool(2)
	p.opens = time.Now() // no settle wait: the order is set by the test
	first := &slotRequest{name: "FirstBoot", n: 4, typical: 8 * time.Minute}
	p.acquire(first)
	granted := make(chan struct{})
	second := &slotRequest{name: "Update", n: 1, typical: 14 * time.Minute}
	go func() { p.acquire(second); close(granted) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for range 500 {
			p.mu.Lock()
			ok := cond()
			p.mu.Unlock()
			if ok {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("never: %s", what)
	}
	waitFor("Update waiting", func() bool { return len(p.waiting) == 1 })
	p.shrink(first, 3) // more than it holds: nothing changes
	p.mu.Lock()
	if first.n != 2 || p.free != 0 || len(p.waiting) != 1 {
		t.Fatalf("a shrink to more than held changed the pool: holds %d, %d free, %d waiting", first.n, p.free, len(p.waiting))
	}
	p.mu.Unlock()
	p.shrink(first, 1)
	select {
	case <-granted:
	case <-time.After(5 * time.Second):
		t.Fatal("Update was not granted the slot FirstBoot gave back")
	}
	p.release(first)
	p.release(second)
	waitFor("every slot free", func() bool { return p.free == 2 && len(p.holders) == 0 })
}
