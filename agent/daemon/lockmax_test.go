package daemon

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/pith-os/pith/rebootlock"
)

// failingKV fails its first writes, as the KV does at boot before it has
// a leader.
type failingKV struct {
	rebootlock.KV
	fails int
}

func (f *failingKV) CompareAndSwap(ctx context.Context, key, value string, prev uint64) (uint64, error) {
	if f.fails > 0 {
		f.fails--
		return 0, errors.New("no leader")
	}
	return f.KV.CompareAndSwap(ctx, key, value, prev)
}

func TestSetLockMax(t *testing.T) {
	for _, tc := range []struct {
		name  string
		group string
		held  []string // holders before
		max   int
		fails int
		free  int // free slots after
	}{
		{name: "default group", max: 3, free: 3},
		{name: "named group", group: "db", max: 2, free: 2},
		{name: "holders keep their slots", held: []string{"m1"}, max: 2, free: 1},
		{name: "retried until the KV takes it", max: 2, fails: 2, free: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := rebootlock.NewMemKV()
			ctx := context.Background()
			sem := &rebootlock.Semaphore{KV: mem, Key: rebootlock.GroupSemaphoreKey(tc.group)}
			for _, h := range tc.held {
				if err := sem.Lock(ctx, h); err != nil {
					t.Fatal(err)
				}
			}
			kv := &failingKV{KV: mem, fails: tc.fails}
			if err := setLockMax(ctx, kv, tc.group, tc.max, time.Millisecond, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
			st, err := sem.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Max != tc.max || st.Semaphore != tc.free || len(st.Holders) != len(tc.held) {
				t.Errorf("semaphore %+v, want max %d, %d free", st, tc.max, tc.free)
			}
			if tc.group != "" {
				def := &rebootlock.Semaphore{KV: mem}
				if d, _ := def.Status(ctx); d.Max != 1 {
					t.Errorf("default group changed: %+v", d)
				}
			}
		})
	}
	// A KV that never answers: it gives up when ctx ends.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := setLockMax(ctx, &failingKV{KV: rebootlock.NewMemKV(), fails: 1 << 30}, "", 2, time.Hour, slog.New(slog.DiscardHandler))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

func TestSecondsOrDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "2", want: 2 * time.Second},
		{in: "0.5", want: 500 * time.Millisecond},
		{in: "750ms", want: 750 * time.Millisecond},
		{in: "0", err: true},
		{in: "-1s", err: true},
		{in: "soon", err: true},
	} {
		var d time.Duration
		err := secondsOrDuration{&d}.Set(tc.in)
		if (err != nil) != tc.err || d != tc.want {
			t.Errorf("Set(%q) = %v, %v; want %v (error %v)", tc.in, d, err, tc.want, tc.err)
		}
	}
}
