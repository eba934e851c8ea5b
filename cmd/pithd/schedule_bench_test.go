package main

// The scheduler at scale on a real 3-node raft (agent/cluster, in one
// process, on 127.0.0.1): N simulated machines heartbeat the leader
// directly, M units are placed, 10% of machines go silent. reschedule_s
// runs from the dead machines' last heartbeat (it includes the TTL).
//
//	go test -run XXX -bench ScheduleRaft -benchtime 1x ./cmd/pithd/

import (
	"github.com/pith-os/pith/internal/pithdtest"
	"github.com/pith-os/pith/unitfile"

	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/agent/cluster"
	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/agent/schedule/member"
)

type raftMember struct {
	node *cluster.Node
	st   *schedule.State
	svc  *member.Scheduler
}

func startRaft(b *testing.B, n int, ttl time.Duration) []*raftMember {
	dir := b.TempDir()
	var peers []cluster.InitialMember
	var ports []int
	for i := 0; i < n; i++ {
		p := pithdtest.FreePort(b)
		ports = append(ports, p)
		peers = append(peers, cluster.InitialMember{Name: fmt.Sprintf("r%d", i), PeerURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", p)}})
	}
	var ms []*raftMember
	for i := 0; i < n; i++ {
		node, err := cluster.New(cluster.Config{
			Name: peers[i].Name, DataDir: filepath.Join(dir, peers[i].Name), ListenPeer: fmt.Sprintf("127.0.0.1:%d", ports[i]),
			PeerURLs: peers[i].PeerURLs, InitialCluster: peers, InitialClusterState: "new", Token: "bench",
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			b.Fatal(err)
		}
		st := schedule.NewState()
		if err := node.Register(cluster.NamespaceSchedule, st); err != nil {
			b.Fatal(err)
		}
		svc, err := member.New(member.Config{State: st,
			Propose: func(ctx context.Context, e []byte) (any, error) {
				res, _, err := node.Propose(ctx, cluster.NamespaceSchedule, e)
				return res, err
			},
			IsLeader: node.IsLeader, Forward: node.Forward, TTL: ttl})
		if err != nil {
			b.Fatal(err)
		}
		node.OnLeader(func(ctx context.Context) { _, term := node.RaftStatus(); svc.Lead(ctx, term) })
		mux := http.NewServeMux()
		mux.Handle("/", svc.Handler())
		if err := node.Start(mux); err != nil {
			b.Fatal(err)
		}
		ms = append(ms, &raftMember{node: node, st: st, svc: svc})
	}
	b.Cleanup(func() {
		for _, m := range ms {
			m.node.Stop()
		}
	})
	return ms
}

func leaderOf(ms []*raftMember) *raftMember {
	for {
		for _, m := range ms {
			if m.node.IsLeader() {
				return m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func BenchmarkScheduleRaft(b *testing.B) {
	const machines, units = 1000, 10000
	ttl := schedule.DefaultTTL
	for i := 0; i < b.N; i++ {
		ms := startRaft(b, 3, ttl)
		lead := leaderOf(ms)
		// Wait until the leader's engine runs (after its barrier).
		time.Sleep(200 * time.Millisecond)
		ctx := context.Background()
		plain, _ := unitfile.ParseUnitFile([]byte("[Service]\nExecStart=/bin/sleep infinity\n"))
		conf, _ := unitfile.ParseUnitFile([]byte("[Service]\nExecStart=/bin/sleep infinity\n[X-Fleet]\nConflicts=db@*.service\n"))
		var wg sync.WaitGroup
		work := make(chan int)
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range work {
					spec := &schedule.UnitSpec{Name: fmt.Sprintf("app%05d.service", j), Options: plain, Desired: unitfile.Launched}
					if j%20 == 0 {
						spec = &schedule.UnitSpec{Name: fmt.Sprintf("db@%d.service", j), Options: conf, Desired: unitfile.Launched}
					}
					if _, err := lead.svc.Store().Propose(ctx, &schedule.Command{Op: schedule.OpCreateUnit, Unit: spec}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		createStart := time.Now()
		for j := 0; j < units; j++ {
			work <- j
		}
		close(work)
		wg.Wait()
		create := time.Since(createStart)

		// Simulated agents: heartbeat the leader every TTL/5.
		ids := make([]schedule.Machine, machines)
		for j := range ids {
			ids[j] = schedule.Machine{ID: fmt.Sprintf("%032x", j+1), PublicIP: fmt.Sprintf("10.1.%d.%d", j>>8, j&255)}
		}
		var mu sync.Mutex
		dead := map[string]bool{}
		var lastFull time.Time // last round that still included every machine
		beatCtx, stopBeats := context.WithCancel(ctx)
		go func() {
			t := time.NewTicker(ttl / 5)
			defer t.Stop()
			for {
				mu.Lock()
				for _, m := range ids {
					if !dead[m.ID] {
						lead.svc.Liveness().Heartbeat(schedule.Heartbeat{Machine: m})
					}
				}
				if len(dead) == 0 {
					lastFull = time.Now()
				}
				mu.Unlock()
				select {
				case <-beatCtx.Done():
					return
				case <-t.C:
				}
			}
		}()
		b.ResetTimer()
		start := time.Now()
		allPlaced := func(avoid map[string]bool) bool {
			for _, u := range lead.st.Units() {
				if u.Machine == "" || avoid[u.Machine] {
					return false
				}
			}
			return true
		}
		for !allPlaced(nil) {
			time.Sleep(10 * time.Millisecond)
		}
		scheduled := time.Since(start)
		b.StopTimer()
		var mem runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&mem)

		// Steady state: raft entries applied over a few heartbeat rounds.
		idx0, _ := lead.node.RaftStatus()
		time.Sleep(3 * time.Second)
		idx1, _ := lead.node.RaftStatus()
		steady := float64(idx1-idx0) / 3

		// 10% of machines go silent.
		mu.Lock()
		for j := 0; j < machines; j += 10 {
			dead[ids[j].ID] = true
		}
		silent := lastFull // their last heartbeat
		mu.Unlock()
		for !allPlaced(dead) {
			time.Sleep(10 * time.Millisecond)
		}
		resched := time.Since(silent)
		stopBeats()
		// Followers hold the same placements.
		for _, m := range ms {
			for m.st.Index() < lead.st.Index() {
				time.Sleep(10 * time.Millisecond)
			}
		}
		for _, u := range lead.st.Units() {
			for _, m := range ms {
				if fu := m.st.Unit(u.Name); fu == nil || fu.Machine != u.Machine {
					b.Fatalf("replica disagrees on %s", u.Name)
				}
			}
		}
		b.ReportMetric(create.Seconds(), "create_s")
		b.ReportMetric(scheduled.Seconds(), "schedule_s")
		b.ReportMetric(resched.Seconds(), "reschedule_s")
		b.ReportMetric(steady, "steady_writes/s")
		b.ReportMetric(float64(mem.HeapAlloc)/(1<<20), "heap_MiB")
	}
}
