package rebootlock_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pith-os/pith/agent/kv"
	"github.com/pith-os/pith/rebootlock"
)

// TestSemaphoreOverEtcdAPI races machines for the reboot semaphore through
// the etcd v2 HTTP API of Pith's own KV (single member, in-process, on
// 127.0.0.1), each with its own client, as pithd nodes would.
func TestSemaphoreOverEtcdAPI(t *testing.T) {
	st := kv.NewStore(kv.Options{})
	ts := httptest.NewServer(kv.NewServer(st, kv.NewLocal(st), kv.Limits{}))
	defer ts.Close()
	ctx := context.Background()
	const machines, slots = 6, 2
	admin, err := rebootlock.NewEtcdKV([]string{ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	sem := &rebootlock.Semaphore{KV: admin}
	if _, err := sem.SetMax(ctx, slots); err != nil {
		t.Fatal(err)
	}
	var inside, most atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, machines)
	for i := 0; i < machines; i++ {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			c, err := rebootlock.NewEtcdKV([]string{ts.URL})
			if err != nil {
				errc <- err
				return
			}
			s := &rebootlock.Semaphore{KV: c}
			for {
				err := s.Lock(ctx, id)
				if err == nil {
					break
				}
				if !errors.Is(err, rebootlock.ErrNoSlots) {
					errc <- err
					return
				}
			}
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if st, err := s.Status(ctx); err != nil || len(st.Holders) > slots {
				errc <- fmt.Errorf("status while holding: %+v %v", st, err)
			}
			inside.Add(-1)
			if err := s.Unlock(ctx, id); err != nil {
				errc <- err
			}
		}(fmt.Sprintf("m%d", i))
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if most.Load() > slots {
		t.Fatalf("%d holders at once, max %d", most.Load(), slots)
	}
	final, err := sem.Status(ctx)
	if err != nil || final.Semaphore != slots || len(final.Holders) != 0 {
		t.Fatalf("final %+v %v", final, err)
	}
	// Errors map to the interface's.
	if _, _, err := admin.Get(ctx, "/nope"); !errors.Is(err, rebootlock.ErrKeyNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := admin.Create(ctx, rebootlock.SemaphoreKey, "{}"); !errors.Is(err, rebootlock.ErrKeyExists) {
		t.Fatalf("create over an existing key: %v", err)
	}
	if _, err := admin.CompareAndSwap(ctx, rebootlock.SemaphoreKey, "{}", 1); !errors.Is(err, rebootlock.ErrCompareFailed) {
		t.Fatalf("stale compare-and-swap: %v", err)
	}
}

// TestSemaphoreWaitChangeOverEtcdAPI: a full semaphore's waiter is woken by
// the release through an etcd v2 waitIndex watch on Pith's own KV.
func TestSemaphoreWaitChangeOverEtcdAPI(t *testing.T) {
	st := kv.NewStore(kv.Options{})
	ts := httptest.NewServer(kv.NewServer(st, kv.NewLocal(st), kv.Limits{}))
	defer ts.Close()
	c, err := rebootlock.NewEtcdKV([]string{ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	rebootlock.CheckWaitChange(t, c)
}
