package kv

import (
	"fmt"
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
