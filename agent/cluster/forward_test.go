package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
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
