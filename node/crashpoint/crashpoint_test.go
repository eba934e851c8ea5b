package crashpoint

import (
	"bytes"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct{ cmdline, fwcfg, want string }{
		{"", "", ""},
		{"console=ttyS0 pith.slot=a", "", ""},
		{"console=ttyS0 pith.crashpoint=firstboot-marker panic=10", "", "firstboot-marker"},
		{"pith.crashpoint=update-pending-saved", "firstboot-marker\n", "update-pending-saved"},
		{"pith.crashpointx=a", "update-trial-armed\n", "update-trial-armed"},
		{"", "  \n", ""},
	} {
		if got := Parse(tc.cmdline, tc.fwcfg); got != tc.want {
			t.Errorf("Parse(%q, %q) = %q, want %q", tc.cmdline, tc.fwcfg, got, tc.want)
		}
	}
}

// Only the named step syncs, prints its line and stops; in that order.
func TestReach(t *testing.T) {
	var steps []string
	var out, log bytes.Buffer
	p := &Points{Name: "b", Out: &out, Log: &log,
		Sync: func() { steps = append(steps, "sync") },
		Stop: func() { steps = append(steps, "stop:"+out.String()) }}
	for _, name := range []string{"a", "", "b"} {
		p.Reach(name)
	}
	if want := []string{"sync", "stop:<3>pith: crashpoint b reached\n"}; len(steps) != 2 || steps[0] != want[0] || steps[1] != want[1] {
		t.Errorf("steps %q, want %q", steps, want)
	}
	if log.String() != "pith: crashpoint b reached\n" {
		t.Errorf("log %q", log.String())
	}
	var none *Points
	none.Reach("b") // a nil setting names nothing
	if (&Points{}).Armed("") || none.Armed("b") || !p.Armed("b") || p.Armed("a") {
		t.Error("Armed")
	}
}
