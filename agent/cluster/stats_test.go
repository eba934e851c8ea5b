package cluster

import (
	"math"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestFollowerStats(t *testing.T) {
	cases := []struct {
		name      string
		latencies []time.Duration // successes, in order
		fails     int
		want      latencyStats
	}{
		{"none", nil, 2, latencyStats{}},
		{"one", []time.Duration{1500 * time.Microsecond}, 0, latencyStats{Current: 1.5, Average: 1.5, Minimum: 1.5, Maximum: 1.5}},
		{"four", []time.Duration{4 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}, 1,
			latencyStats{Current: 2, Average: 2.5, StandardDeviation: math.Sqrt(1.25), Minimum: 1, Maximum: 4}},
		{"equal", []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}, 0, latencyStats{Current: 1, Average: 1, Minimum: 1, Maximum: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var f followerStats
			for i := 0; i < c.fails; i++ {
				f.fail()
			}
			for _, d := range c.latencies {
				f.succ(d)
			}
			got := f.snapshot()
			l := got["latency"].(latencyStats)
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
			if !near(l.Current, c.want.Current) || !near(l.Average, c.want.Average) || !near(l.StandardDeviation, c.want.StandardDeviation) ||
				!near(l.Minimum, c.want.Minimum) || !near(l.Maximum, c.want.Maximum) {
				t.Errorf("latency %+v, want %+v", l, c.want)
			}
			if n := got["counts"].(countStats); n.Success != uint64(len(c.latencies)) || n.Fail != uint64(c.fails) {
				t.Errorf("counts %+v, want success %d fail %d", n, len(c.latencies), c.fails)
			}
		})
	}
}

// TestCommitIndexClamped: followers are never told a commit index past
// what the leader has fsynced; heartbeats (no commit index) stay as they are.
func TestCommitIndexClamped(t *testing.T) {
	cases := []struct{ commit, durable, want uint64 }{
		{0, 5, 0},
		{3, 5, 3},
		{5, 5, 5},
		{9, 5, 5},
	}
	for _, tc := range cases {
		tr := timedTransport{durable: func() uint64 { return tc.durable }}
		req := &raft.AppendEntriesRequest{LeaderCommitIndex: tc.commit}
		tr.clamp("f", req)
		if req.LeaderCommitIndex != tc.want {
			t.Errorf("commit %d, durable %d: told %d, want %d", tc.commit, tc.durable, req.LeaderCommitIndex, tc.want)
		}
	}
}
