package e2e

import (
	"slices"
	"testing"
	"time"
)

// TestSlotPool: requests arriving together are granted longest first among
// those that fit, a request for more slots than the pool has takes them
// all, a freed slot goes to the longest waiting request that fits in it,
// and no more slots are ever out than the pool has. Each step releases one
// holder ("" first: nothing) and lists what is granted then.
func TestSlotPool(t *testing.T) {
	type req struct {
		name    string
		n       int
		typical time.Duration
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
			[]req{{"EC2", 1, 2 * time.Minute}, {"Demo", 3, 18 * time.Minute}, {"OEM", 1, 3 * time.Minute}, {"Update", 1, 14 * time.Minute}, {"FirstBoot", 3, 6 * time.Minute}},
			[]step{{"", []string{"Demo"}}, {"Demo", []string{"Update", "OEM"}}, {"OEM", []string{"EC2"}}, {"EC2", nil}, {"Update", []string{"FirstBoot"}}, {"FirstBoot", nil}}},
		{"one slot: one test at a time, ties by name", 1,
			[]req{{"C", 1, 5 * time.Minute}, {"B", 2, time.Minute}, {"A", 1, 5 * time.Minute}},
			[]step{{"", []string{"A"}}, {"A", []string{"C"}}, {"C", []string{"B"}}, {"B", nil}}},
		{"a short test fills what the long one leaves", 4,
			[]req{{"E", 1, 2 * time.Minute}, {"U", 2, 14 * time.Minute}, {"Demo", 3, 18 * time.Minute}},
			[]step{{"", []string{"Demo", "E"}}, {"E", nil}, {"Demo", []string{"U"}}, {"U", nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newSlotPool(tc.size)
			release := map[string]chan struct{}{}
			size := map[string]int{}
			for _, r := range tc.reqs {
				release[r.name] = make(chan struct{})
				size[r.name] = min(r.n, tc.size)
				go func() {
					sr := &slotRequest{name: r.name, n: r.n, typical: r.typical}
					p.acquire(sr)
					<-release[r.name]
					p.release(sr)
				}()
			}
			holding := map[string]bool{}
			granted, released := 0, 0
			for _, s := range tc.steps {
				if s.release != "" {
					if !holding[s.release] {
						t.Fatalf("step releases %s, which holds no slots", s.release)
					}
					close(release[s.release])
					delete(holding, s.release)
					released++
				}
				// Settled: the release is counted, every request not yet
				// released holds or waits, and none that waits fits.
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
					settled := !time.Now().Before(p.opens) && len(p.waiting)+len(holding)+len(got) == len(tc.reqs)-released &&
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
