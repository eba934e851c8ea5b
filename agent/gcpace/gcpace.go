// Package gcpace paces pithd's garbage collector by headroom, not only by
// ratio. Go's default (GOGC=100) collects when the heap has doubled since
// the last collection; pithd's live heap is a few MiB, so under writes it
// collected every 150 or so, and on a small machine each collection's
// mark work competes with raft's goroutines for the same cores: at one
// client, that was pithd's p99 write latency above etcd's (README, KV).
// Run lets the heap grow by at least a fixed headroom before a
// collection, as GOGC does for large heaps.
package gcpace

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Pace bounds: never below Go's default ratio, never above maxPercent.
const (
	minPercent = 100
	maxPercent = 1000
)

// percentFor is the GC percent that lets a heap of live bytes grow by
// headroom before it is collected, within [minPercent, maxPercent].
func percentFor(live, headroom uint64) int {
	if live == 0 {
		return maxPercent
	}
	p := headroom * 100 / live
	return int(max(minPercent, min(maxPercent, p)))
}

const liveMetric = "/gc/heap/live:bytes"

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: liveMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Run sets the GC percent from the live heap now and every interval until
// ctx ends. An operator's GOGC wins: with it set, Run does nothing.
func Run(ctx context.Context, headroom uint64, interval time.Duration, log *slog.Logger) {
	if v, ok := os.LookupEnv("GOGC"); ok {
		log.Info("GC pace left to GOGC", "GOGC", v)
		return
	}
	set := 0
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if p := percentFor(liveHeap(), headroom); p != set {
			debug.SetGCPercent(p)
			set = p
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
