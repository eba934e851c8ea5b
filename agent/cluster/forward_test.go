package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestReadProposalAnswer(t *testing.T) {
	msg := func(code byte, s string) []byte {
		return append(append([]byte{code}, binary.AppendUvarint(nil, uint64(len(s)))...), s...)
	}
	cases := []struct {
		name      string
		in        []byte
		index     uint64
		noLeader  bool // the write never reached the log: safe to retry
		wantErr   bool // an answer that is an error
		malformed bool
	}{
		{"applied", append([]byte{proposalApplied}, binary.AppendUvarint(nil, 1234)...), 1234, false, false, false},
		{"not applied", msg(proposalNotApplied, "node is not the leader"), 0, true, true, false},
		{"unknown outcome", msg(proposalUnknown, "leadership lost while committing log"), 0, false, true, false},
		{"truncated", []byte{proposalApplied}, 0, false, false, true},
		{"message too long", append([]byte{proposalUnknown}, binary.AppendUvarint(nil, 1<<20)...), 0, false, false, true},
	}
	for _, tc := range cases {
		a, err := readProposalAnswer(bufio.NewReader(bytes.NewReader(tc.in)))
		if (err != nil) != tc.malformed {
			t.Errorf("%s: read error %v", tc.name, err)
			continue
		}
		if tc.malformed {
			continue
		}
		if a.index != tc.index || (a.err != nil) != tc.wantErr || errors.Is(a.err, ErrNoLeader) != tc.noLeader {
			t.Errorf("%s: %+v", tc.name, a)
		}
	}
}

func TestResultsRing(t *testing.T) {
	var r results
	r.put(5, "five")
	r.put(5+uint64(len(r.index)), "later")
	if _, ok := r.get(5); ok {
		t.Fatal("a result overwritten by a later entry was still returned")
	}
	if v, ok := r.get(5 + uint64(len(r.index))); !ok || v != "later" {
		t.Fatalf("result of the later entry: %v %v", v, ok)
	}
	if _, ok := r.get(6); ok {
		t.Fatal("a result never recorded was returned")
	}
}

// TestPostProposals: what a follower makes of the leader's answers to a
// batch, including a leader of an earlier release that has no such
// endpoint (the KV then forwards the client's request whole).
func TestPostProposals(t *testing.T) {
	applied := append([]byte{proposalApplied}, binary.AppendUvarint(nil, 7)...)
	cases := []struct {
		name   string
		status int
		body   []byte
		check  func(a []proposalAnswer) bool
	}{
		{"both applied", 200, append(append([]byte{}, applied...), append([]byte{proposalApplied}, binary.AppendUvarint(nil, 8)...)...),
			func(a []proposalAnswer) bool {
				return a[0].index == 7 && a[1].index == 8 && a[0].err == nil && a[1].err == nil
			}},
		{"leader of an earlier release", 404, []byte("404 page not found"),
			func(a []proposalAnswer) bool {
				return errors.Is(a[0].err, ErrLeaderTooOld) && errors.Is(a[1].err, ErrLeaderTooOld)
			}},
		{"no longer leader", 503, []byte("not the raft leader"),
			func(a []proposalAnswer) bool {
				return errors.Is(a[0].err, ErrNoLeader) && errors.Is(a[1].err, ErrNoLeader)
			}},
		{"answer cut short", 200, applied,
			func(a []proposalAnswer) bool {
				return a[0].index == 7 && a[1].err != nil && !errors.Is(a[1].err, ErrNoLeader)
			}},
	}
	for _, tc := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != proposalsPath || r.Header.Get(ForwardedHeader) != "f1" {
				http.Error(w, "wrong request", http.StatusTeapot)
				return
			}
			w.WriteHeader(tc.status)
			w.Write(tc.body)
		}))
		n := &Node{id: "f1", fwd: srv.Client(), cfg: Config{ElectionTimeout: time.Second}}
		batch := []*proposal{{data: []byte{byte(NamespaceKV), 1}, done: make(chan proposalAnswer, 1)}, {data: []byte{byte(NamespaceKV), 2}, done: make(chan proposalAnswer, 1)}}
		n.postProposals(context.Background(), srv.URL, batch)
		srv.Close()
		got := []proposalAnswer{<-batch[0].done, <-batch[1].done}
		if !tc.check(got) {
			t.Errorf("%s: %+v", tc.name, got)
		}
	}
}
