package channels

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The fleet server's load: 10,000 machines reporting every minute is ~167
// reports/s. These benchmarks measure what one core ingests (through the
// HTTP handler, Ed25519 check included) and what /v1/fleet costs with
// 10,000 machines known, also while that report load runs.
//
//	go test -run '^$' -bench Fleet -benchtime 3s -cpu 1 ./channels/

const benchMachines = 10000

type benchFleet struct {
	srv      *Server
	machines []*testMachine
}

func newBenchFleet(b *testing.B) *benchFleet {
	b.Helper()
	s, err := NewServer(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	dir := b.TempDir()
	if s.Fleet, err = OpenFleet(dir); err != nil {
		b.Fatal(err)
	}
	if err := WriteRollout(dir, &Rollout{Channel: "stable", Version: "1.1.0", Percent: 50, State: RolloutActive, Halt: DefaultHaltRule}); err != nil {
		b.Fatal(err)
	}
	bf := &benchFleet{srv: s}
	for i := range benchMachines {
		m := newTestMachine(fmt.Sprintf("machine-%05d", i))
		m.group = []string{"default", "web", "db"}[i%3]
		bf.machines = append(bf.machines, m)
		ev, running, version := EventChecked, "1.0.0", ""
		if i%2 == 0 {
			ev, running, version = EventGood, "1.1.0", "1.1.0"
		}
		if err := s.Fleet.Ingest(m.report(b, ev, running, version, "")); err != nil {
			b.Fatal(err)
		}
	}
	// A day of history at one sample a minute.
	for range maxSamples {
		s.Fleet.Sample()
	}
	return bf
}

func (bf *benchFleet) post(body []byte) int {
	req := httptest.NewRequest(http.MethodPost, "/v1/report", bytes.NewReader(body))
	w := httptest.NewRecorder()
	bf.srv.ServeHTTP(w, req)
	return w.Code
}

func (bf *benchFleet) get(path string) (int, int) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := httptest.NewRecorder()
	bf.srv.ServeHTTP(w, req)
	return w.Code, w.Body.Len()
}

func BenchmarkFleetIngest(b *testing.B) {
	bf := newBenchFleet(b)
	bodies := make([][]byte, b.N)
	for i := range bodies {
		m := bf.machines[i%benchMachines]
		bodies[i] = m.report(b, EventChecked, "1.0.0", "", "")
	}
	b.ResetTimer()
	for i := range b.N {
		if code := bf.post(bodies[i]); code != http.StatusNoContent {
			b.Fatalf("report: %d", code)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reports/s")
}

func BenchmarkFleetJSON(b *testing.B) {
	bf := newBenchFleet(b)
	b.ResetTimer()
	size := 0
	for range b.N {
		code, n := bf.get("/v1/fleet")
		if code != 200 {
			b.Fatalf("/v1/fleet: %d", code)
		}
		size = n
	}
	b.ReportMetric(float64(size), "bytes")
}

func BenchmarkFleetDashboard(b *testing.B) {
	bf := newBenchFleet(b)
	b.ResetTimer()
	for range b.N {
		if code, _ := bf.get("/"); code != 200 {
			b.Fatalf("/: %d", code)
		}
	}
}

func BenchmarkFleetFlush(b *testing.B) {
	bf := newBenchFleet(b)
	b.ResetTimer()
	for range b.N {
		bf.srv.Fleet.dirty = true
		if err := bf.srv.Fleet.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFleetJSONUnderLoad: /v1/fleet latency while the 10,000 machines
// report at their real rate (one report each per minute, signed ahead so
// the benchmark's CPU goes to the server). reports/s shows whether the
// server kept up (~167 wanted).
func BenchmarkFleetJSONUnderLoad(b *testing.B) {
	bf := newBenchFleet(b)
	bodies := make([][]byte, benchMachines)
	for i, m := range bf.machines {
		bodies[i] = m.report(b, EventChecked, "1.0.0", "", "")
	}
	interval := time.Minute / benchMachines
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Int64
	wg.Add(1)
	b.ResetTimer()
	start := time.Now()
	go func() {
		defer wg.Done()
		for i := range bodies {
			// On schedule; when behind, catch up without sleeping.
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				select {
				case <-stop:
					return
				case <-time.After(d):
				}
			}
			select {
			case <-stop:
				return
			default:
			}
			if code := bf.post(bodies[i]); code != http.StatusNoContent {
				panic(fmt.Sprint("report: ", code))
			}
			sent.Add(1)
		}
	}()
	for range b.N {
		if code, _ := bf.get("/v1/fleet"); code != 200 {
			b.Fatalf("/v1/fleet: %d", code)
		}
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(sent.Load())/time.Since(start).Seconds(), "reports/s")
}
