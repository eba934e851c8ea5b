package gcpace

import (
	"runtime"
	"testing"
)

func TestPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, headroom uint64
		want           int
	}{
		{5 * mib, 32 * mib, 640},
		{32 * mib, 32 * mib, 100},
		{300 * mib, 32 * mib, 100}, // large heaps: Go's default ratio
		{1 * mib, 32 * mib, 1000},  // capped
		{0, 32 * mib, 1000},        // nothing live yet
	} {
		if got := percentFor(tc.live, tc.headroom); got != tc.want {
			t.Errorf("percentFor(%d, %d) = %d, want %d", tc.live, tc.headroom, got, tc.want)
		}
	}
}

// The runtime still publishes the live heap (as of the last collection)
// under the name Run reads.
func TestLiveHeap(t *testing.T) {
	keep := make([]byte, 1<<20)
	runtime.GC()
	if liveHeap() < uint64(len(keep)) {
		t.Fatalf("runtime/metrics' %s reads %d with 1 MiB kept", liveMetric, liveHeap())
	}
	runtime.KeepAlive(keep)
}
