package kvcheck_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/pith-os/pith/internal/kvcheck"
)

// TestMissing: acknowledged keys are looked up with one quorum read per
// directory; a key the read does not list is lost, an absent directory
// loses all of its keys, and a failed read is an error, not a loss.
func TestMissing(t *testing.T) {
	stored := map[string][]string{
		"/a": {"/a/1", "/a/2"},
		"/b": {"/b/1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dir := strings.TrimPrefix(r.URL.Path, "/v2/keys")
		if r.URL.Query().Get("quorum") != "true" || r.URL.Query().Get("recursive") != "true" {
			http.Error(w, "want a recursive quorum read", http.StatusBadRequest)
			return
		}
		if dir == "/broken" {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"errorCode":300}`))
			return
		}
		keys, ok := stored[dir]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"errorCode":100,"message":"Key not found"}`))
			return
		}
		var r2 kvcheck.Resp
		r2.Node.Key, r2.Node.Dir = dir, true
		for _, k := range keys {
			r2.Node.Nodes = append(r2.Node.Nodes, struct {
				Key   string `json:"key"`
				Value string `json:"value"`
			}{k, "x"})
		}
		json.NewEncoder(w).Encode(r2)
	}))
	defer srv.Close()
	c := &kvcheck.Client{Members: 1, URL: func(int) string { return srv.URL }}
	cases := []struct {
		name  string
		acked []string
		lost  []string
		err   bool
	}{
		{"all there", []string{"/a/1", "/a/2", "/b/1"}, nil, false},
		{"one lost", []string{"/a/1", "/a/3", "/b/1"}, []string{"/a/3"}, false},
		{"directory gone", []string{"/a/1", "/c/1", "/c/2"}, []string{"/c/1", "/c/2"}, false},
		{"read failed", []string{"/broken/1"}, nil, true},
	}
	for _, tc := range cases {
		lost, err := c.Missing(context.Background(), 0, tc.acked)
		if (err != nil) != tc.err || !slices.Equal(lost, tc.lost) {
			t.Errorf("%s: lost %v err %v, want %v (error %v)", tc.name, lost, err, tc.lost, tc.err)
		}
	}
}
