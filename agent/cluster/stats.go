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
//
// It also holds the commit index it tells followers to what this leader
// has fsynced (durable): raft counts the leader's copy toward a commit
// once written, before the background fsync (walsync.go), and a follower
// must not apply an entry that only it and an unsynced leader hold. And it
// reports what each follower acknowledged (acked) for commit notices.
type timedTransport struct {
	*raft.NetworkTransport
	stats   *leaderStats
	durable func() uint64
	acked   func(id raft.ServerID, index uint64)
	// sent is told the commit index an AppendEntries carries (raft's own;
	// commit notices need not repeat it).
	sent func(id raft.ServerID, index uint64)
	// rpcs is what raft consumes: the network's RPCs and the commit
	// notices a follower's proposal stream brings in (proposalstream.go).
	rpcs chan raft.RPC
	// closed ends relayRPCs when the transport closes (raft's Shutdown).
	closed    chan struct{}
	closeOnce *sync.Once
}

func newTimedTransport(nt *raft.NetworkTransport) timedTransport {
	t := timedTransport{NetworkTransport: nt, rpcs: make(chan raft.RPC), closed: make(chan struct{}), closeOnce: new(sync.Once)}
	go t.relayRPCs()
	return t
}

// Close closes the network transport and ends the relay.
func (t timedTransport) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	return t.NetworkTransport.Close()
}

// Consumer is raft's side of rpcs.
func (t timedTransport) Consumer() <-chan raft.RPC { return t.rpcs }

// relayRPCs feeds rpcs from the network until the transport closes.
func (t timedTransport) relayRPCs() {
	in := t.NetworkTransport.Consumer()
	for {
		select {
		case rpc := <-in:
			select {
			case t.rpcs <- rpc:
			case <-t.closed:
				return
			}
		case <-t.closed:
			return
		}
	}
}

func (t timedTransport) clamp(id raft.ServerID, args *raft.AppendEntriesRequest) {
	if t.durable != nil && args.LeaderCommitIndex > 0 {
		args.LeaderCommitIndex = min(args.LeaderCommitIndex, t.durable())
	}
	if t.sent != nil && args.LeaderCommitIndex > 0 {
		// The follower commits no further than what it holds.
		t.sent(id, min(args.LeaderCommitIndex, ackedThrough(args)))
	}
}

// ackedThrough is the last index a successful answer to req confirms.
func ackedThrough(req *raft.AppendEntriesRequest) uint64 {
	return req.PrevLogEntry + uint64(len(req.Entries))
}

func (t timedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	t.clamp(id, args)
	start := time.Now()
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	f := t.stats.follower(string(id))
	if err != nil {
		f.fail()
	} else {
		f.succ(time.Since(start))
		if resp.Success && t.acked != nil {
			t.acked(id, ackedThrough(args))
		}
	}
	return err
}

func (t timedTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	w := &watchedPipeline{AppendPipeline: p, t: t, id: id, out: make(chan raft.AppendFuture, 128), done: make(chan struct{})}
	go w.relay()
	return w, nil
}

// watchedPipeline clamps pipelined requests and reads their answers on the
// way to raft.
type watchedPipeline struct {
	raft.AppendPipeline
	t    timedTransport
	id   raft.ServerID
	out  chan raft.AppendFuture
	done chan struct{}
	once sync.Once
}

func (p *watchedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	p.t.clamp(p.id, args)
	return p.AppendPipeline.AppendEntries(args, resp)
}

func (p *watchedPipeline) Consumer() <-chan raft.AppendFuture { return p.out }

func (p *watchedPipeline) Close() error {
	err := p.AppendPipeline.Close()
	p.once.Do(func() { close(p.done) })
	return err
}

func (p *watchedPipeline) relay() {
	in := p.AppendPipeline.Consumer()
	for {
		select {
		case <-p.done:
			return
		case f := <-in:
			if f.Error() == nil && f.Response().Success && p.t.acked != nil {
				p.t.acked(p.id, ackedThrough(f.Request()))
			}
			select {
			case p.out <- f:
			case <-p.done:
				return
			}
		}
	}
}
