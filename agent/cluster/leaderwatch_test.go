package cluster

import (
	"context"
	"errors"
	"testing"
)

func TestLeaderWatch(t *testing.T) {
	var w changeSignal
	first := w.changed()
	if w.changed() != first {
		t.Fatal("two reads without a change gave different channels")
	}
	select {
	case <-first:
		t.Fatal("closed before any change")
	default:
	}
	w.bump()
	select {
	case <-first:
	default:
		t.Fatal("a change did not close the channel")
	}
	second := w.changed()
	select {
	case <-second:
		t.Fatal("the channel after a change is already closed")
	default:
	}
	w.bump()
	w.bump() // no channel taken since: nothing to close twice
	<-second
}

func TestLostLeader(t *testing.T) {
	other := errors.New("connection reset")
	cases := []struct {
		name  string
		cause error
		lost  bool
	}{
		{"leader lost", ErrLeaderLost, true},
		{"client gone", context.Canceled, false},
		{"still running", nil, false},
	}
	for _, tc := range cases {
		ctx, cancel := context.WithCancelCause(context.Background())
		if tc.cause != nil {
			cancel(tc.cause)
		}
		got := lostLeader(ctx, other)
		if errors.Is(got, ErrLeaderLost) != tc.lost || (!tc.lost && got != other) {
			t.Errorf("%s: %v", tc.name, got)
		}
		cancel(nil)
	}
}
