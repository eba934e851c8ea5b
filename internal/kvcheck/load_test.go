package kvcheck_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/internal/kvcheck"
)

// fakeKV is a single-member etcd v2 keys API in memory: puts, prevValue
// compare-and-swaps, gets. With stalePlain, plain (non-quorum) gets answer
// "not found", as a member that serves reads from behind its own writes.
type fakeKV struct {
	mu         sync.Mutex
	index      uint64
	vals       map[string]string
	idx        map[string]uint64
	stalePlain bool
}

func (f *fakeKV) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := strings.TrimPrefix(r.URL.Path, "/v2/keys")
	var resp kvcheck.Resp
	status := http.StatusOK
	switch r.Method {
	case http.MethodPut:
		r.ParseForm()
		if prev := r.PostForm.Get("prevValue"); prev != "" && f.vals[key] != prev {
			status, resp.ErrorCode = http.StatusPreconditionFailed, 101
			break
		}
		if _, ok := f.vals[key]; !ok {
			status = http.StatusCreated
		}
		f.index++
		f.vals[key], f.idx[key] = r.PostForm.Get("value"), f.index
		resp.Node.Key, resp.Node.Value, resp.Node.ModifiedIndex = key, f.vals[key], f.index
	default:
		if r.URL.Query().Get("recursive") == "true" {
			// A directory listing (one level, as the load's keys are).
			resp.Node.Key, resp.Node.Dir = key, true
			for k, v := range f.vals {
				if strings.HasPrefix(k, key+"/") {
					resp.Node.Nodes = append(resp.Node.Nodes, struct {
						Key   string `json:"key"`
						Value string `json:"value"`
					}{k, v})
				}
			}
			break
		}
		v, ok := f.vals[key]
		if !ok || f.stalePlain && r.URL.Query().Get("quorum") != "true" {
			status, resp.ErrorCode = http.StatusNotFound, 100
			break
		}
		resp.Node.Key, resp.Node.Value, resp.Node.ModifiedIndex = key, v, f.idx[key]
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(resp)
}

// TestLoad runs the load against an honest member and against one whose
// plain reads fall behind the client's own writes: both histories are
// linearizable (quorum reads are right), only the second has stale reads.
func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stale     bool
		wantStale bool
	}{
		{"honest member", false, false},
		{"plain reads behind the client's writes", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(&fakeKV{vals: map[string]string{}, idx: map[string]uint64{}, stalePlain: tc.stale})
			defer srv.Close()
			h := kvcheck.NewHistory()
			l := &kvcheck.Load{Client: &kvcheck.Client{Members: 1, URL: func(int) string { return srv.URL }}, History: h, Clients: 3, Keys: []string{"/k"}}
			stop := make(chan struct{})
			wg := l.Run(stop)
			for h.Count() < 300 || len(h.Acked()) < 50 {
				time.Sleep(5 * time.Millisecond)
			}
			close(stop)
			wg.Wait()
			res := kvcheck.Check(h.Ops())
			if !res.Linearizable || res.Unknown != 0 {
				t.Errorf("history: %s, want linearizable with no unknown outcome", res)
			}
			if got := len(h.Stale()) > 0; got != tc.wantStale {
				t.Errorf("stale plain reads: %d (%v), want some: %v", len(h.Stale()), h.Stale(), tc.wantStale)
			}
			if lost, err := l.Client.Missing(t.Context(), 0, h.Acked()); err != nil || len(lost) != 0 {
				t.Errorf("acknowledged keys lost: %v %v", lost, err)
			}
		})
	}
}
