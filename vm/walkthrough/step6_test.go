package walkthrough

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/pith-os/pith/channels"
)

// TestAdmitOne: the share step 6 computes admits exactly the machine it
// names, for machine IDs like the nodes' and versions like the releases',
// and survives the CLI's round trip (pct -> --percent).
func TestAdmitOne(t *testing.T) {
	cases := []struct {
		ids     []string
		version string
	}{
		{[]string{"a1", "b2", "c3"}, "1.0.1"},
		{[]string{"a1", "b2", "c3"}, "1.0.2"},
		{[]string{"4f0c1e6a9b2d4c8e8a7f6b5c4d3e2f10", "5a1b2c3d4e5f60718293a4b5c6d7e8f9", "0123456789abcdef0123456789abcdef"}, "2026.12.3"},
		{[]string{"x", "y"}, "0.0.1"},
	}
	// Many more ID sets: whatever the places, one machine is admitted.
	for n := range 200 {
		cases = append(cases, struct {
			ids     []string
			version string
		}{[]string{fmt.Sprintf("m%d-1", n), fmt.Sprintf("m%d-2", n), fmt.Sprintf("m%d-3", n)}, fmt.Sprintf("1.0.%d", n%7)})
	}
	for _, c := range cases {
		p, first, err := admitOne(c.ids, c.version)
		if err != nil {
			t.Fatalf("%v %s: %v", c.ids, c.version, err)
		}
		back, err := strconv.ParseFloat(pct(p), 64)
		if err != nil || back != p {
			t.Fatalf("pct(%v) = %q does not parse back (%v)", p, pct(p), err)
		}
		if p <= 0 || p > 100 {
			t.Errorf("%v %s: share %v outside (0, 100]", c.ids, c.version, p)
		}
		for i, id := range c.ids {
			if got := channels.Admitted(id, c.version, back); got != (i == first) {
				t.Errorf("%v %s: at %v%% machine %s (place %v) admitted=%v, want only %s", c.ids, c.version, back, id, channels.Bucket(id, c.version), got, c.ids[first])
			}
		}
	}
}

// TestAdmitOneRefuses: no share admits one of fewer than two machines, or
// of two machines with the same place (the same ID twice).
func TestAdmitOneRefuses(t *testing.T) {
	for _, ids := range [][]string{nil, {"only"}, {"same", "same"}} {
		if p, first, err := admitOne(ids, "1.0.1"); err == nil {
			t.Errorf("admitOne(%q) = %v, %d, want an error", ids, p, first)
		}
	}
}
