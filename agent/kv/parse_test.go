package kv

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParseKeyRequest checks that any method, path and query either parses
// into a request with a clean absolute path and a valid command, or gets an
// etcd error with a known code; never a panic. The seeds run in every
// `go test`; `go test -fuzz=FuzzParseKeyRequest ./agent/kv` explores more.
func FuzzParseKeyRequest(f *testing.F) {
	seeds := []struct{ method, path, query string }{
		{"GET", "/v2/keys/foo", "recursive=true&sorted=true"},
		{"PUT", "/v2/keys/foo", "value=bar&ttl=5"},
		{"PUT", "/v2/keys/foo", "prevExist=false&dir=true"},
		{"PUT", "/v2/keys/foo", "refresh=true&ttl=1&prevExist=true"},
		{"DELETE", "/v2/keys/foo", "prevIndex=3&prevValue=x"},
		{"GET", "/v2/keys/foo", "wait=true&waitIndex=7&stream=true"},
		{"POST", "/v2/keys/q", "value=job"},
		{"PUT", "/v2/keys/../etc", "value=x"},
		{"PUT", "/v2/keysfoo", ""},
		{"GET", "/v2/keys", "ttl=-1"},
		{"PUT", "/v2/keys/a", "ttl=18446744073709551615"},
		{"PUT", "/v2/keys/a", "ttl=9000000000"},
		{"PUT", "/v2/keys/a%zz", "value=%zz"},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query)
	}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		form, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		rr, perr := ParseKeyRequest(method, path, form, Limits{})
		if perr != nil {
			if rr != nil || errorMessages[perr.ErrorCode] == "" || perr.Message != errorMessages[perr.ErrorCode] {
				t.Fatalf("bad error %+v", perr)
			}
			return
		}
		if !strings.HasPrefix(rr.Path, "/") || cleanPath(rr.Path) != rr.Path {
			t.Fatalf("unclean path %q", rr.Path)
		}
		for _, seg := range strings.Split(path, "/") {
			if seg == ".." {
				t.Fatalf("accepted %q", path)
			}
		}
		c := rr.Command(t0)
		if rr.TTL != nil && c.Expire < t0.UnixNano() {
			t.Fatalf("ttl %d expires at %d, before now %d", *rr.TTL, c.Expire, t0.UnixNano())
		}
		got, err := UnmarshalCommand(c.Marshal())
		if err != nil || *got != *c {
			t.Fatalf("command round trip: %+v vs %+v (%v)", c, got, err)
		}
		// Applying the command to a store must not panic either.
		s := newTestStore()
		s.Exec(c)
	})
}
