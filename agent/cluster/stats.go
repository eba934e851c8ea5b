package cluster

import (
	"math"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// followerStats is one follower's entry in /v2/stats/leader, in etcd v2's
// shape: round-trip latency of the leader's AppendEntries RPCs to it
// (heartbeats included) in milliseconds, and counts of RPCs that
// succeeded or failed.
type followerStats struct {
	mu      sync.Mutex
	Latency latencyStats `json:"latency"`
	Counts  countStats   `json:"counts"`
	// sumSq is the sum of squared latencies, for the standard deviation.
	sumSq float64
}

type latencyStats struct {
	Current           float64 `json:"current"`
	Average           float64 `json:"average"`
	StandardDeviation float64 `json:"standardDeviation"`
	Minimum           float64 `json:"minimum"`
	Maximum           float64 `json:"maximum"`
}

type countStats struct {
	Fail    uint64 `json:"fail"`
	Success uint64 `json:"success"`
}

func (f *followerStats) succ(d time.Duration) {
	ms := float64(d) / float64(time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	n := float64(f.Counts.Success)
	f.Counts.Success++
	l := &f.Latency
	l.Current = ms
	if f.Counts.Success == 1 || ms < l.Minimum {
		l.Minimum = ms
	}
	if ms > l.Maximum {
		l.Maximum = ms
	}
	l.Average = (l.Average*n + ms) / (n + 1)
	f.sumSq += ms * ms
	// Population deviation: sqrt(E[x²] - E[x]²), clamped against rounding.
	l.StandardDeviation = math.Sqrt(math.Max(0, f.sumSq/(n+1)-l.Average*l.Average))
}

func (f *followerStats) fail() {
	f.mu.Lock()
	f.Counts.Fail++
	f.mu.Unlock()
}

// snapshot copies the figures for encoding.
func (f *followerStats) snapshot() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[string]any{"latency": f.Latency, "counts": f.Counts}
}

// leaderStats holds followerStats by member ID.
type leaderStats struct{ m sync.Map }

func (s *leaderStats) follower(id string) *followerStats {
	if f, ok := s.m.Load(id); ok {
		return f.(*followerStats)
	}
	f, _ := s.m.LoadOrStore(id, &followerStats{})
	return f.(*followerStats)
}

// timedTransport is the raft transport with AppendEntries timed per
// target. Embedding keeps every other method and optional interface
// (pre-vote, pipelining, close) of the network transport.
type timedTransport struct {
	*raft.NetworkTransport
	stats *leaderStats
}

func (t timedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	start := time.Now()
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	f := t.stats.follower(string(id))
	if err != nil {
		f.fail()
	} else {
		f.succ(time.Since(start))
	}
	return err
}
