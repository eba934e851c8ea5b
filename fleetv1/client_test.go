package fleetv1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A server that answers every page with the same token must not make the
// client loop forever.
func TestClientRefusesRepeatedPageToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(MachinePage{Machines: []*Machine{{ID: "m1"}}, NextPageToken: "same"})
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := c.Machines(context.Background()); err == nil || !strings.Contains(err.Error(), "page token") {
		t.Fatalf("got %d machines, err %v; want a repeated-token error", len(ms), err)
	}
}

// A 503 (election, leader change) is retried with the same body; a 503
// that lasts gives up after UnavailableRetry with the server's message.
func TestClientRetriesUnavailable(t *testing.T) {
	var calls int
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if calls < 3 || strings.Contains(r.URL.Path, "down") {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":{"code":503,"message":"no raft leader (election in progress)"}}`)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetUnitTargetState(context.Background(), "a.service", "launched"); err != nil {
		t.Fatalf("after two 503s: %v", err)
	}
	if calls != 3 || bodies[0] == "" || bodies[0] != bodies[2] {
		t.Fatalf("%d calls, bodies %q", calls, bodies)
	}
	old := UnavailableRetry
	UnavailableRetry = 500 * time.Millisecond
	defer func() { UnavailableRetry = old }()
	calls = 0
	err = c.SetUnitTargetState(context.Background(), "down.service", "launched")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != 503 || !strings.Contains(err.Error(), "election") || calls < 2 {
		t.Fatalf("lasting 503: %v after %d calls", err, calls)
	}
}
