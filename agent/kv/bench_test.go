package kv

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func BenchmarkStoreSet(b *testing.B) {
	s := NewStore(Options{})
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("/bench/%04d", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Set(keys[i%len(keys)], false, "value", 0, false)
	}
}

func BenchmarkCommandRoundTrip(b *testing.B) {
	c := Command{Op: OpCompareAndSwap, Path: "/bench/key", Value: strings.Repeat("v", 256), PrevValue: "p", PrevIndex: 7}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalCommand(c.AppendTo(buf[:0])); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHTTPPut measures the keys API's own cost per write (parsing,
// encoding, applying, answering) without replication.
func BenchmarkHTTPPut(b *testing.B) {
	st := NewStore(Options{})
	srv := NewServer(st, NewLocal(st), Limits{})
	body := url.Values{"value": {strings.Repeat("v", 256)}}.Encode()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		req := httptest.NewRequest("PUT", fmt.Sprintf("/v2/keys/bench/%d", i%1000), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusOK && w.Code != http.StatusCreated {
			b.Fatalf("HTTP %d: %s", w.Code, w.Body)
		}
	}
}

// snapshotBenchStore is a store like the one hack/bench-kv.sh leaves: 100k
// keys of 256 bytes in one directory, with a full event history.
func snapshotBenchStore() *Store {
	s := NewStore(Options{})
	v := strings.Repeat("v", 256)
	for i := range 100_000 {
		s.Set(fmt.Sprintf("/bench-256/%08d", i), false, v, 0, false)
	}
	return s
}

// BenchmarkSnapshotSave is a whole snapshot of the store: the copy, then
// the sorting and encoding, which raft's snapshot goroutine runs.
func BenchmarkSnapshotSave(b *testing.B) {
	s := snapshotBenchStore()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Save(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshotCapture is the part of a snapshot raft pauses applies
// for (cluster.Capturer): the copy, not the encoding.
func BenchmarkSnapshotCapture(b *testing.B) {
	s := snapshotBenchStore()
	b.ReportAllocs()
	for b.Loop() {
		s.Capture()
	}
}
