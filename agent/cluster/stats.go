package cluster

import (
	"math"
	"sync"
	"sync/atomic"
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
// tells the commit notices (readyourwrites.go) what each follower
// acknowledged, what raft's own requests told it, and which pipeline
// carries its entries.
type timedTransport struct {
	*raft.NetworkTransport
	stats   *leaderStats
	durable func() uint64
	notices *commitNotices
}

func (t timedTransport) clamp(id raft.ServerID, args *raft.AppendEntriesRequest) {
	if t.durable != nil && args.LeaderCommitIndex > 0 {
		args.LeaderCommitIndex = min(args.LeaderCommitIndex, t.durable())
	}
	if t.notices != nil && args.LeaderCommitIndex > 0 {
		// The follower commits no further than what it holds.
		t.notices.sent(id, min(args.LeaderCommitIndex, ackedThrough(args)))
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
		if resp.Success && t.notices != nil {
			t.notices.acked(id, ackedThrough(args))
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
	if t.notices != nil {
		t.notices.pipeOpened(id, w)
	}
	return w, nil
}

// watchedPipeline clamps pipelined requests and reads their answers on the
// way to raft. Commit notices to the follower are written on it too, after
// the entries they commit: the follower reads a connection's requests in
// order, so it holds the entry when the notice naming it arrives.
type watchedPipeline struct {
	raft.AppendPipeline
	t    timedTransport
	id   raft.ServerID
	out  chan raft.AppendFuture
	done chan struct{}
	once sync.Once
	// mu keeps a request's write and its place in the queue of answers
	// together: raft's replication and the notices share the connection.
	mu sync.Mutex
	// shipped is the last entry index written on the connection;
	// inflight counts the requests written whose answers raft has not
	// been handed yet.
	shipped  atomic.Uint64
	inflight atomic.Int64
}

func (p *watchedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	p.t.clamp(p.id, args)
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := p.AppendPipeline.AppendEntries(args, resp)
	if err == nil {
		p.inflight.Add(1)
		if len(args.Entries) > 0 {
			raise(&p.shipped, ackedThrough(args))
		}
	}
	return f, err
}

// notify writes req, a commit notice, when the follower is sure to hold
// the entry it names (req.PrevLogEntry) by the time it reads it: the entry
// went out on this connection before, or the follower acknowledged it
// (held). Its answer reaches raft like any other.
func (p *watchedPipeline) notify(req *raft.AppendEntriesRequest, held uint64) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.notifyLocked(req, held)
}

// tryNotify is notify for a caller that must not wait (the state
// machine's goroutine): it writes only when no other write is under way
// and every answer was read, so neither the write nor the hand-off to the
// answer reader blocks (raft's transport reads answers in order, one
// request at a time past the first).
func (p *watchedPipeline) tryNotify(req *raft.AppendEntriesRequest, held uint64) bool {
	if !p.mu.TryLock() {
		return false
	}
	defer p.mu.Unlock()
	if p.inflight.Load() > 0 {
		return false
	}
	ok, _ := p.notifyLocked(req, held)
	return ok
}

func (p *watchedPipeline) notifyLocked(req *raft.AppendEntriesRequest, held uint64) (bool, error) {
	if req.PrevLogEntry > max(p.shipped.Load(), held) {
		return false, nil
	}
	if _, err := p.AppendPipeline.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
		return false, err
	}
	p.inflight.Add(1)
	return true, nil
}

func (p *watchedPipeline) Consumer() <-chan raft.AppendFuture { return p.out }

func (p *watchedPipeline) Close() error {
	err := p.AppendPipeline.Close()
	p.once.Do(func() {
		close(p.done)
		if p.t.notices != nil {
			p.t.notices.pipeClosed(p.id, p)
		}
	})
	return err
}

func (p *watchedPipeline) relay() {
	in := p.AppendPipeline.Consumer()
	for {
		select {
		case <-p.done:
			return
		case f := <-in:
			p.inflight.Add(-1)
			if f.Error() == nil && p.t.notices != nil {
				if resp := f.Response(); resp.Success {
					p.t.notices.acked(p.id, ackedThrough(f.Request()))
				} else if resp.Term <= f.Request().Term {
					p.t.notices.rejected(p.id, resp.LastLog)
				}
			}
			select {
			case p.out <- f:
			case <-p.done:
				return
			}
		}
	}
}
