package rebootlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSemaphoreLocksmithFormat(t *testing.T) {
	kv := NewMemKV()
	s := &Semaphore{KV: kv}
	ctx := context.Background()
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if raw := kv.vals[SemaphoreKey]; raw != `{"semaphore":1,"max":1,"holders":[]}` {
		t.Fatalf("initial document %s, want locksmith's", raw)
	}
	if st.Max != 1 || st.Semaphore != 1 {
		t.Fatalf("%+v", st)
	}
	if err := s.Lock(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Lock(ctx, "m1"); err != nil {
		t.Fatalf("re-lock by the holder (after its reboot): %v", err)
	}
	if err := s.Lock(ctx, "m2"); !errors.Is(err, ErrNoSlots) {
		t.Fatalf("second machine: %v", err)
	}
	var doc SemaphoreState
	json.Unmarshal([]byte(kv.vals[SemaphoreKey]), &doc)
	if doc.Semaphore != 0 || len(doc.Holders) != 1 || doc.Holders[0] != "m1" {
		t.Fatalf("after lock %s", kv.vals[SemaphoreKey])
	}
	if err := s.Unlock(ctx, "m2"); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("unlock by a non-holder: %v", err)
	}
	// set-max with a holder: free slots follow, holders stay.
	if old, err := s.SetMax(ctx, 3); err != nil || old != 1 {
		t.Fatalf("SetMax %d %v", old, err)
	}
	if st, _ := s.Status(ctx); st.Semaphore != 2 || st.Max != 3 {
		t.Fatalf("after set-max 3 %+v", st)
	}
	if _, err := s.SetMax(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status(ctx); st.Semaphore != -1 {
		t.Fatalf("after set-max 0 with a holder %+v", st)
	}
	if err := s.Unlock(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status(ctx); st.Semaphore != 0 || len(st.Holders) != 0 {
		t.Fatalf("after unlock %+v", st)
	}
	// A document written by locksmith itself is read as is.
	kv.vals[SemaphoreKey] = "{\n\t\"semaphore\": 0,\n\t\"max\": 1,\n\t\"holders\": [\"69d27b356a94476da859461d3a3bc6fd\"]\n}"
	if st, err := s.Status(ctx); err != nil || st.Holders[0] != "69d27b356a94476da859461d3a3bc6fd" {
		t.Fatalf("locksmith document: %+v %v", st, err)
	}
	kv.vals[SemaphoreKey] = "garbage"
	if err := s.Lock(ctx, "m1"); err == nil {
		t.Fatal("garbage semaphore accepted")
	}
}

// TestSemaphoreContention races many machines for a semaphore of 3 slots:
// never more than 3 inside at once, every machine gets its turn, and the
// document ends consistent.
func TestSemaphoreContention(t *testing.T) {
	const machines, slots, rounds = 24, 3, 3
	kv := NewMemKV()
	ctx := context.Background()
	setup := &Semaphore{KV: kv}
	if _, err := setup.SetMax(ctx, slots); err != nil {
		t.Fatal(err)
	}
	var inside, maxInside atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, machines)
	for i := 0; i < machines; i++ {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			s := &Semaphore{KV: kv}
			for r := 0; r < rounds; r++ {
				for {
					err := s.Lock(ctx, id)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrNoSlots) {
						errc <- err
						return
					}
					time.Sleep(50 * time.Microsecond)
				}
				n := inside.Add(1)
				for {
					m := maxInside.Load()
					if n <= m || maxInside.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(time.Millisecond) // "rebooting"
				inside.Add(-1)
				if err := s.Unlock(ctx, id); err != nil {
					errc <- err
					return
				}
			}
		}(fmt.Sprintf("machine-%02d", i))
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if m := maxInside.Load(); m > slots {
		t.Fatalf("%d machines held the semaphore at once, max %d", m, slots)
	} else if m < 2 {
		t.Fatalf("at most %d machine inside: the test did not exercise concurrency", m)
	}
	st, err := setup.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Semaphore != slots || st.Max != slots || len(st.Holders) != 0 {
		t.Fatalf("final state %+v", st)
	}
	t.Logf("max inside %d, failed compare-and-swaps %d", maxInside.Load(), kv.cas.Load())
}

// TestSemaphoreWaitChange: a machine that found the semaphore full waits on
// the index Lock saw and is woken by the holder's release, over MemKV and
// over the etcd API (etcdkv_test.go); a KV that cannot watch says so.
func TestSemaphoreWaitChange(t *testing.T) {
	testWaitChange(t, NewMemKV())
	if err := (&Semaphore{KV: struct{ KV }{NewMemKV()}}).WaitChange(context.Background(), 1); !errors.Is(err, ErrCannotWatch) {
		t.Fatalf("KV without Watch: %v, want ErrCannotWatch", err)
	}
}

// testWaitChange is the WaitChange check for any KV that can watch.
func testWaitChange(t *testing.T, kv KV) {
	t.Helper()
	ctx := context.Background()
	s := &Semaphore{KV: kv}
	if err := s.Lock(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	err := s.Lock(ctx, "m2")
	var full *NoSlotsError
	if !errors.As(err, &full) || !errors.Is(err, ErrNoSlots) || full.Index == 0 || len(full.Holders) != 1 {
		t.Fatalf("second Lock: %v (%+v), want a NoSlotsError naming m1 with an index", err, full)
	}
	woke := make(chan error, 1)
	go func() { woke <- s.WaitChange(ctx, full.Index) }()
	time.Sleep(50 * time.Millisecond) // room for a wrong early answer (the check only weakens if slow)
	select {
	case err := <-woke:
		t.Fatalf("WaitChange returned (%v) before anything changed", err)
	default:
	}
	if err := s.Unlock(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("WaitChange not woken by the release")
	}
	if err := s.Lock(ctx, "m2"); err != nil {
		t.Fatalf("Lock after the wake-up: %v", err)
	}
	// A change already made after the index answers at once.
	if err := s.WaitChange(ctx, full.Index); err != nil {
		t.Fatal(err)
	}
}
