package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPprofLoopbackOnly: the profiler answers a request that came in on a
// loopback listener from a loopback caller (a real 127.0.0.1 connection),
// and refuses one that arrived on a network address of the listener (as
// --listen-client-urls http://0.0.0.0:2379 or the peer port receive them)
// or from a network caller; the mux's other routes are untouched.
func TestPprofLoopbackOnly(t *testing.T) {
	mux := http.NewServeMux()
	registerPprof(mux)
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })

	ts := httptest.NewServer(mux)
	defer ts.Close()
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("loopback %s: %d %s", p, resp.StatusCode, b)
		}
	}

	// Requests as the server sees them on other listeners (no traffic
	// leaves loopback: the addresses are only what the handler reads).
	cases := []struct {
		name, local, remote string
		status              int
	}{
		{"network listener, network caller", "10.0.2.15:2379", "10.0.2.16:40000", 403},
		{"wildcard listener reached on its network address", "192.0.2.10:2379", "192.0.2.10:40000", 403},
		{"loopback listener, spoofed network caller", "127.0.0.1:2379", "192.0.2.1:40000", 403},
		{"peer port", "10.0.2.15:2380", "10.0.2.16:40000", 403},
		{"IPv6 network listener", "[2001:db8::1]:2379", "[2001:db8::2]:40000", 403},
		{"no local address (unix socket)", "", "@", 403},
		{"IPv6 loopback", "[::1]:2379", "[::1]:40000", 200},
	}
	for _, c := range cases {
		for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol", "/debug/pprof/heap"} {
			r := httptest.NewRequest("GET", p, nil)
			r.RemoteAddr = c.remote
			if c.local != "" {
				la, err := net.ResolveTCPAddr("tcp", c.local)
				if err != nil {
					t.Fatal(err)
				}
				r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, la))
			}
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			if w.Code != c.status || (c.status == 403 && !strings.Contains(w.Body.String(), "only on 127.0.0.1")) {
				t.Errorf("%s %s: %d %q, want %d", c.name, p, w.Code, w.Body, c.status)
			}
		}
		r := httptest.NewRequest("GET", "/health", nil)
		r.RemoteAddr = c.remote
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Errorf("%s /health: %d", c.name, w.Code)
		}
	}
}
