package e2e

// VM slots: how the VM tests share the machine. A TCG guest keeps about one
// core busy, so the machine has one slot per core (PITH_E2E_VM_SLOTS
// overrides it). Each VM test calls NeedVMs first: the test becomes
// parallel and waits until it holds a slot per guest it runs at once (all
// of them for a test with more guests than slots), so two one-guest tests
// run side by side on two cores while a three-node cluster has the machine
// to itself. The slots, not go test's -parallel, bound how much runs at
// once (`make e2e` passes a -parallel larger than the number of tests).

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// vmSlotSettle is how long an idle pool waits after a request before it
// grants any: go test releases its parallel tests together, and within this
// time all of them have asked, so the ranking decides whatever order the
// goroutines ran in.
const vmSlotSettle = time.Second

// slotRequest is one test's claim.
type slotRequest struct {
	name    string
	n       int           // slots, at most the pool's size
	typical time.Duration // the test's usual length: longer ones start first
}

// slotPool hands out slots. Waiting requests are ranked: more slots first
// (a cluster test needs the whole machine, and started after the one-guest
// tests it would wait for every one of them), then longer first, then by
// name. The first in rank is granted as soon as it fits. While it does not
// fit, a later request may start in the free slots only if its typical
// length ends before the first could start anyway (when, by their typical
// lengths, the holders will have freed enough): backfilling never delays
// the first, so a test needing every slot is not starved by a stream of
// one-guest tests.
type slotPool struct {
	mu      sync.Mutex
	cond    *sync.Cond
	size    int
	free    int
	opens   time.Time // no grant before (zero until the first request)
	waiting []*slotRequest
	holders []*slotHold
	granted []string // test names in the order they got their slots
	now     func() time.Time
}

// slotHold is a granted request and when it is expected to end.
type slotHold struct {
	r   *slotRequest
	end time.Time
}

func newSlotPool(size int) *slotPool {
	p := &slotPool{size: size, free: size, now: time.Now}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// acquire blocks until r holds its slots.
func (p *slotPool) acquire(r *slotRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.n > p.size {
		r.n = p.size
	}
	// Requests arriving at an idle pool wait a moment for the others go
	// test releases with them (again after a sequential test that held
	// slots), so the ranking, not goroutine order, decides who starts.
	if len(p.waiting) == 0 && len(p.holders) == 0 && !p.now().Before(p.opens) {
		p.opens = p.now().Add(vmSlotSettle)
		go func() {
			time.Sleep(vmSlotSettle)
			p.mu.Lock()
			p.cond.Broadcast()
			p.mu.Unlock()
		}()
	}
	p.waiting = append(p.waiting, r)
	for p.now().Before(p.opens) || p.next() != r {
		p.cond.Wait()
	}
	p.free -= r.n
	p.granted = append(p.granted, r.name)
	p.holders = append(p.holders, &slotHold{r: r, end: p.now().Add(r.typical)})
	p.waiting = slices.DeleteFunc(p.waiting, func(w *slotRequest) bool { return w == r })
	p.cond.Broadcast() // another request may fit in what is left
}

// ranksBefore orders waiting requests: more slots, then longer, then name.
func ranksBefore(a, b *slotRequest) bool {
	if a.n != b.n {
		return a.n > b.n
	}
	if a.typical != b.typical {
		return a.typical > b.typical
	}
	return a.name < b.name
}

// next is the waiting request to grant now, or nil: the first in rank if
// it fits, else the first in rank of those that fit and end before the
// first could start.
func (p *slotPool) next() *slotRequest {
	if len(p.waiting) == 0 {
		return nil
	}
	ranked := slices.Clone(p.waiting)
	slices.SortFunc(ranked, func(a, b *slotRequest) int {
		if ranksBefore(a, b) {
			return -1
		}
		return 1
	})
	head := ranked[0]
	if head.n <= p.free {
		return head
	}
	shadow := p.startsAt(head.n)
	for _, w := range ranked[1:] {
		if w.n <= p.free && !p.now().Add(w.typical).After(shadow) {
			return w
		}
	}
	return nil
}

// startsAt is when n slots will be free if every holder ends at its
// typical length (an overrunning holder counts as ending now).
func (p *slotPool) startsAt(n int) time.Time {
	now := p.now()
	ends := make([]slotHold, len(p.holders))
	for i, h := range p.holders {
		ends[i] = *h
	}
	slices.SortFunc(ends, func(a, b slotHold) int { return a.end.Compare(b.end) })
	free := p.free
	at := now
	for _, h := range ends {
		if free >= n {
			break
		}
		free += h.r.n
		if h.end.After(at) {
			at = h.end
		}
	}
	return at
}

// shrink lowers r's slots to n (never raises them): its holder runs
// fewer guests from now on, and a waiting test may start in the rest.
func (p *slotPool) shrink(r *slotRequest, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < 0 || n >= r.n {
		return
	}
	p.free += r.n - n
	r.n = n
	p.cond.Broadcast()
}

func (p *slotPool) release(r *slotRequest) {
	p.mu.Lock()
	p.free += r.n
	p.holders = slices.DeleteFunc(p.holders, func(h *slotHold) bool { return h.r == r })
	p.cond.Broadcast()
	p.mu.Unlock()
}

var (
	vmPoolOnce sync.Once
	vmPool     *slotPool
	// vmDeclared is, per test holding slots, how many guests it said it
	// runs at once; Boot checks against it.
	vmDeclared sync.Map // test name -> int
	// vmHeld is each holding test's request, for FewerVMs.
	vmHeld sync.Map // test name -> *slotRequest
)

// vmSlotCount is PITH_E2E_VM_SLOTS, else the number of CPUs.
func vmSlotCount() (int, error) {
	if s := os.Getenv("PITH_E2E_VM_SLOTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("PITH_E2E_VM_SLOTS=%q: want a positive number of guests to run at once", s)
		}
		return n, nil
	}
	return max(1, runtime.NumCPU()), nil
}

// NeedVMs marks t parallel and waits until it holds a slot for each of the
// guests it runs at once (every slot if guests is more), then keeps them
// until t ends. typical is the test's usual length under TCG on two cores:
// only the order tests start in depends on it. Take it from a CI run (the
// VM slot line's wait and the test's end): longer tests start first and
// short ones fill the end, where a test declared shorter than it runs was
// left alone on the machine (TestEC2, 2 minutes declared, 2.25 run, the
// last 1.8 minutes of a CI run on one core). Call it first in every test
// that boots a guest or builds an image; a parent whose subtests boot lets
// each subtest call it instead (a parent holding slots while its parallel
// subtests wait for go test's own limit could deadlock).
func NeedVMs(t *testing.T, guests int, typical time.Duration) {
	t.Helper()
	needVMs(t, guests, guests, typical)
}

// NeedVMsShared is NeedVMs for a test whose guests, once up, mostly wait
// on each other: it may run guests at once but holds only slots, so a
// one-guest test runs beside it in the core time its guests leave idle
// (and both run slower). TestDemo's three nodes boot together, then
// reboot one at a time while the others idle: with the machine to itself,
// two cores were 22% idle over its 20 minutes (vmstat every 5 s,
// 2026-12-04). On one slot, with one-guest tests beside it, it took 35
// minutes and the cores were 0-4% idle; the e2e run took 50.9 minutes
// against 52.5 before, within what runs vary by.
func NeedVMsShared(t *testing.T, guests, slots int, typical time.Duration) {
	t.Helper()
	if slots < 1 || slots > guests {
		t.Fatalf("NeedVMsShared(%d guests, %d slots): want 1 to %d slots", guests, slots, guests)
	}
	needVMs(t, guests, slots, typical)
}

func needVMs(t *testing.T, guests, slots int, typical time.Duration) {
	t.Helper()
	if guests < 1 {
		t.Fatalf("NeedVMs(%d): a VM test runs at least one guest", guests)
	}
	t.Parallel()
	vmPoolOnce.Do(func() {
		n, err := vmSlotCount()
		if err != nil {
			t.Fatal(err)
		}
		vmPool = newSlotPool(n)
	})
	if vmPool == nil {
		t.Fatal("no VM slot pool (PITH_E2E_VM_SLOTS is invalid)")
	}
	r := &slotRequest{name: t.Name(), n: slots, typical: typical}
	start := time.Now()
	vmPool.acquire(r)
	vmDeclared.Store(t.Name(), guests)
	vmHeld.Store(t.Name(), r)
	t.Cleanup(func() {
		vmDeclared.Delete(t.Name())
		vmHeld.Delete(t.Name())
		vmPool.release(r)
	})
	t.Logf("VM slots: %d of %d for %d guest(s), after waiting %s", r.n, vmPool.size, guests, time.Since(start).Round(time.Second))
}

// FewerVMs tells the pool that t, which called NeedVMs, now runs at most
// guests at once (it stopped the others and boots no more), so the slots
// beyond them go to waiting tests before t ends.
func FewerVMs(t *testing.T, guests int) {
	t.Helper()
	r, ok := vmHeld.Load(t.Name())
	if !ok {
		t.Fatalf("FewerVMs(%d): %s holds no VM slots", guests, t.Name())
	}
	vmPool.shrink(r.(*slotRequest), guests)
}

// declaredGuests is what NeedVMs declared for t or the nearest parent
// test that called it, 0 if none did.
func declaredGuests(t *testing.T) int {
	for name := t.Name(); ; {
		if v, ok := vmDeclared.Load(name); ok {
			return v.(int)
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			return 0
		}
		name = name[:i]
	}
}

// liveGuests counts, per test, the QEMUs Boot started that still run.
var liveGuests = struct {
	sync.Mutex
	byTest map[string][]*Cluster
}{byTest: map[string][]*Cluster{}}

// checkGuests fails t if booting n more guests would run more at once
// than NeedVMs declared: the slots would no longer match the machine's load.
func checkGuests(t *testing.T, n int) {
	t.Helper()
	declared := declaredGuests(t)
	if declared == 0 {
		t.Fatalf("%s boots a guest without NeedVMs(t, guests, typical) at its start: VM tests share the machine through VM slots (e2e/vmslots.go)", t.Name())
	}
	liveGuests.Lock()
	defer liveGuests.Unlock()
	running := 0
	for _, c := range liveGuests.byTest[t.Name()] {
		for _, n := range c.Nodes {
			if n.M.Running() {
				running++
			}
		}
	}
	if running+n > declared {
		t.Fatalf("%s would run %d guests at once but declared %d with NeedVMs: declare what the test really runs", t.Name(), running+n, declared)
	}
}

// trackGuests records c's machines for checkGuests.
func trackGuests(t *testing.T, c *Cluster) {
	liveGuests.Lock()
	defer liveGuests.Unlock()
	liveGuests.byTest[t.Name()] = append(liveGuests.byTest[t.Name()], c)
	t.Cleanup(func() {
		liveGuests.Lock()
		defer liveGuests.Unlock()
		delete(liveGuests.byTest, t.Name())
	})
}
