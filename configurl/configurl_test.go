package configurl

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pith-os/pith/cloudconfig"
)

// TestFetch: Ignition's rules. No server and 5xx are retried (one report
// a try) until the wait; any other answer than 200/204 ends at once; 204
// and an empty 200 are no config; data: URLs decode; other schemes, an
// oversized body and an unknown CA are refused without a retry.
func TestFetch(t *testing.T) {
	const cfg = `{"ignition":{"version":"3.4.0"}}`
	var fails atomic.Int32 // 5xx answers left before a 200
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "identity" || !strings.Contains(r.Header.Get("Accept"), "application/vnd.coreos.ignition+json") {
			http.Error(w, "headers", http.StatusBadRequest)
			return
		}
		w.Write([]byte(cfg))
	})
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		if fails.Add(-1) >= 0 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(cfg))
	})
	var silent atomic.Int32 // answers before /silent stops answering
	mux.HandleFunc("/silent", func(w http.ResponseWriter, r *http.Request) {
		if silent.Add(1) == 1 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		<-r.Context().Done()
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/forbidden", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) })
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, cloudconfig.MaxSize+1)) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(tlsSrv.Certificate())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String() + "/config.ign"
	l.Close()

	for _, tc := range []struct {
		name, url string
		roots     *x509.CertPool
		fails     int32
		want      string // the body, or the error's text with wantErr
		wantErr   bool
		retries   int           // reports of retried tries (-1: at least one)
		wait      time.Duration // 0: 1s
	}{
		{name: "200", url: srv.URL + "/ok", want: cfg},
		{name: "5xx then 200", url: srv.URL + "/flaky", fails: 2, want: cfg, retries: 2, wait: 5 * time.Second},
		{name: "204", url: srv.URL + "/nocontent"},
		{name: "404 at once", url: srv.URL + "/missing", want: "GET " + srv.URL + "/missing: 404 Not Found", wantErr: true},
		{name: "403 at once", url: srv.URL + "/forbidden", want: "403 Forbidden", wantErr: true},
		{name: "5xx until the wait", url: srv.URL + "/down", want: "no answer within 1s", wantErr: true, retries: -1},
		// The wait ends in a try: the error is what the server last did.
		{name: "5xx then no answer", url: srv.URL + "/silent", want: "503 Service Unavailable", wantErr: true, retries: 1},
		{name: "connection refused until the wait", url: refused, want: "connection refused", wantErr: true, retries: -1},
		{name: "too large", url: srv.URL + "/huge", want: "larger than", wantErr: true, wait: time.Minute},
		{name: "https", url: tlsSrv.URL + "/ok", roots: pool, want: cfg},
		{name: "https unknown CA at once", url: tlsSrv.URL + "/ok", want: "certificate", wantErr: true},
		{name: "data", url: "data:," + strings.ReplaceAll(cfg, `"`, "%22"), want: cfg},
		{name: "data base64", url: "data:;base64,eyJpZ25pdGlvbiI6eyJ2ZXJzaW9uIjoiMy40LjAifX0=", want: cfg},
		{name: "data bad base64", url: "data:;base64,!!", want: "a data: URL: invalid base64", wantErr: true},
		{name: "tftp", url: "tftp://10.0.0.1/config.ign", want: "Pith fetches http, https and data: config URLs only", wantErr: true},
		{name: "credentials redacted", url: "http://user:secret@" + l.Addr().String() + "/c?token=abc", want: "xxxxx", wantErr: true, retries: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fails.Store(tc.fails)
			retries := 0
			if tc.wait == 0 {
				tc.wait = time.Second // room for a retry on a loaded machine
			}
			f := &Fetcher{Client: NewClient(tc.roots), Wait: tc.wait,
				OnRetry: func(try int, err error, next, left time.Duration) {
					retries++
					if try != retries || err == nil || next <= 0 || next > left {
						t.Errorf("OnRetry(%d, %v, %v, %v) as report %d", try, err, next, left, retries)
					}
				}}
			got, err := f.Fetch(context.Background(), tc.url)
			switch {
			case tc.wantErr && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one with %q", err, tc.want)
			case tc.wantErr && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "abc")):
				t.Errorf("the error shows the URL's credentials: %v", err)
			case !tc.wantErr && (err != nil || string(got) != tc.want):
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
			if (tc.retries >= 0 && retries != tc.retries) || (tc.retries < 0 && retries == 0) {
				t.Errorf("%d retries reported, want %d", retries, tc.retries)
			}
		})
	}
}
