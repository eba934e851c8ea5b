package schedule

import (
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/unitfile"
)

// TestPlacedHearsMoves: the engine tells Placed what it placed, and why
// a unit left a machine that died.
func TestPlacedHearsMoves(t *testing.T) {
	s := newSim(t, mach("m1"), mach("m2"))
	var got []Placement
	s.eng.Placed = func(ps []Placement) { got = append(got, ps...) }
	s.submit("web.service", unitfile.Launched, "MachineID=m1")
	s.reconcile()
	if len(got) != 1 || got[0].Unit != "web.service" || got[0].From != "" || got[0].To != "m1" {
		t.Fatalf("placements heard after the submit: %+v", got)
	}
	got = nil
	s.up["m1"] = false
	s.pass(DefaultTTL + time.Second)
	if len(got) != 1 || got[0].From != "m1" || got[0].To != "" || !strings.Contains(got[0].Reason, "m1") {
		t.Fatalf("placements heard after m1 died: %+v", got)
	}
	got = nil
	s.pass(2 * time.Second)
	if len(got) != 0 {
		t.Fatalf("placements heard with nothing to change: %+v", got)
	}
}
