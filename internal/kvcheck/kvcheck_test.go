package kvcheck_test

import (
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/pith-os/pith/internal/kvcheck"
)

// TestModel shows the checker rejects a stale read and accepts the
// same history once the read may overlap the write, and that pruning keeps
// observed unknown puts.
func TestModel(t *testing.T) {
	put := func(v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: kvcheck.Input{Put: true, Key: "/k", Value: v}, Call: call, Output: "", Return: ret}
	}
	cas := func(prev, v, out string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: kvcheck.Input{CAS: true, Key: "/k", Value: v, Prev: prev}, Call: call, Output: out, Return: ret}
	}
	get := func(v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: kvcheck.Input{Key: "/k"}, Call: call, Output: v, Return: ret}
	}
	cases := []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"stale read after acknowledged write", []porcupine.Operation{put("1", 0, 1), put("2", 2, 3), get("1", 4, 5)}, false},
		{"read overlapping the write", []porcupine.Operation{put("1", 0, 1), put("2", 2, 5), get("1", 4, 6)}, true},
		{"unknown put observed later", []porcupine.Operation{put("1", 0, kvcheck.Unknown), get("1", 4, 6)}, true},
		{"value never written", []porcupine.Operation{put("1", 0, 1), get("3", 4, 6)}, false},
		{"unknown put unobserved", []porcupine.Operation{put("1", 0, 1), put("2", 1, kvcheck.Unknown), get("1", 4, 6)}, true},
		{"cas succeeds on the current value", []porcupine.Operation{put("1", 0, 1), cas("1", "2", "ok", 2, 3), get("2", 4, 5)}, true},
		{"cas cannot succeed on a stale value", []porcupine.Operation{put("1", 0, 1), put("2", 2, 3), cas("1", "3", "ok", 4, 5)}, false},
		{"cas fails only if the value differs", []porcupine.Operation{put("1", 0, 1), cas("1", "3", "fail", 2, 3)}, false},
		{"failed cas explained by an unknown put", []porcupine.Operation{put("1", 0, 1), put("9", 1, kvcheck.Unknown), cas("1", "3", "fail", 4, 5)}, true},
	}
	for _, tc := range cases {
		ops := kvcheck.PruneUnknown(tc.ops)
		if got := porcupine.CheckOperations(kvcheck.Model, ops); got != tc.ok {
			t.Errorf("%s: linearizable=%v, want %v", tc.name, got, tc.ok)
		}
	}
	if n := len(kvcheck.PruneUnknown([]porcupine.Operation{put("1", 0, kvcheck.Unknown), get("1", 4, 6)})); n != 2 {
		t.Errorf("observed unknown put pruned (%d ops left)", n)
	}
}
