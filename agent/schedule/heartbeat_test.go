package schedule

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pith-os/pith/unitfile"
)

const testHash = "0123456789abcdef0123456789abcdef01234567"

// worstHeartbeat is the largest valid heartbeat: every count and every
// string at its limit, with the characters JSON escapes where allowed.
func worstHeartbeat() Heartbeat {
	hb := Heartbeat{Machine: Machine{
		ID:       strings.Repeat("a", MaxMachineIDLen),
		PublicIP: "0000:0000:0000:0000:0000:ffff:255.255.255.255",
		Metadata: map[string]string{},
	}}
	for i := 0; i < MaxMetadataEntries; i++ {
		k := fmt.Sprintf("%03d", i)
		hb.Machine.Metadata[k+strings.Repeat("k", MaxMetadataLen-len(k))] = strings.Repeat("v", MaxMetadataLen)
	}
	for i := 0; i < MaxUnitsPerMachine; i++ {
		p := fmt.Sprintf("u%04d", i)
		name := p + strings.Repeat(`\`, unitfile.MaxUnitNameLen-len(p)-len(".service")) + ".service"
		hb.Units = append(hb.Units, UnitReport{Name: name, Hash: testHash, Current: unitfile.Launched,
			LoadState: strings.Repeat("l", MaxReportStateLen), ActiveState: strings.Repeat("a", MaxReportStateLen),
			SubState: strings.Repeat("s", MaxReportStateLen), Error: strings.Repeat("e", MaxReportErrorLen)})
	}
	return hb
}

// The limit is exact: the largest valid heartbeat fits, with only what the
// bound counts generously to spare.
func TestMaxHeartbeatSizeIsTight(t *testing.T) {
	hb := worstHeartbeat()
	if err := hb.Validate(); err != nil {
		t.Fatalf("worst-case heartbeat invalid: %v", err)
	}
	b, err := json.Marshal(hb)
	if err != nil {
		t.Fatal(err)
	}
	// The bound counts every name byte as an escaped backslash (two bytes)
	// and a separator after the last unit and metadata entry; these names
	// have 13 plain bytes each ("u0000", ".service").
	want := MaxHeartbeatSize - 2 - MaxUnitsPerMachine*len("u0000.service")
	if len(b) != want {
		t.Fatalf("largest valid heartbeat is %d bytes, want %d (limit %d)", len(b), want, MaxHeartbeatSize)
	}
	// Far from unit files: a heartbeat has names, hashes and states only.
	if MaxHeartbeatSize > 8<<20 {
		t.Fatalf("MaxHeartbeatSize %d", MaxHeartbeatSize)
	}
}

func TestHeartbeatValidate(t *testing.T) {
	ok := func() Heartbeat {
		return Heartbeat{Machine: Machine{ID: "abc123", PublicIP: "10.0.0.1", Metadata: map[string]string{"role": "db"}},
			Units: []UnitReport{{Name: "a.service", Hash: testHash, Current: unitfile.Launched, LoadState: "loaded", ActiveState: "active", SubState: "running"}}}
	}
	tests := []struct {
		name string
		mod  func(*Heartbeat)
		err  string
	}{
		{"valid", func(*Heartbeat) {}, ""},
		{"no id", func(h *Heartbeat) { h.Machine.ID = "" }, "machine ID is empty"},
		{"long id", func(h *Heartbeat) { h.Machine.ID = strings.Repeat("a", MaxMachineIDLen+1) }, "over the limit"},
		{"id chars", func(h *Heartbeat) { h.Machine.ID = "a/b" }, "letters, digits"},
		{"bad ip", func(h *Heartbeat) { h.Machine.PublicIP = "example.com" }, "not an IP address"},
		{"metadata entries", func(h *Heartbeat) {
			for i := 0; i <= MaxMetadataEntries; i++ {
				h.Machine.Metadata[fmt.Sprint(i)] = "x"
			}
		}, "metadata entries"},
		{"metadata value", func(h *Heartbeat) { h.Machine.Metadata["k"] = strings.Repeat("v", MaxMetadataLen+1) }, "values at most"},
		{"metadata quote", func(h *Heartbeat) { h.Machine.Metadata["k"] = `a"b` }, "printable ASCII"},
		{"too many units", func(h *Heartbeat) {
			h.Units = make([]UnitReport, MaxUnitsPerMachine+1)
		}, "over the limit of 4096"},
		{"bad unit name", func(h *Heartbeat) { h.Units[0].Name = "a.txt" }, "unknown type"},
		{"bad hash", func(h *Heartbeat) { h.Units[0].Hash = "xyz" }, "hex digits"},
		{"bad current", func(h *Heartbeat) { h.Units[0].Current = "running" }, "current state"},
		{"long state", func(h *Heartbeat) { h.Units[0].SubState = strings.Repeat("s", MaxReportStateLen+1) }, "systemd state word"},
		{"state escapes", func(h *Heartbeat) { h.Units[0].ActiveState = "<b>" }, "systemd state word"},
		{"long error", func(h *Heartbeat) { h.Units[0].Error = strings.Repeat("e", MaxReportErrorLen+1) }, "error text"},
		{"error newline", func(h *Heartbeat) { h.Units[0].Error = "a\nb" }, "error text"},
	}
	for _, tc := range tests {
		hb := ok()
		tc.mod(&hb)
		err := hb.Validate()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
}

// Clamp makes whatever an agent gathered valid: a machine is never refused
// (and declared dead) for a long systemd message or too many units.
func TestHeartbeatClamp(t *testing.T) {
	hb := Heartbeat{Machine: Machine{ID: "m1"}}
	for i := 0; i < MaxUnitsPerMachine+3; i++ {
		hb.Units = append(hb.Units, UnitReport{Name: fmt.Sprintf("u%05d.service", i), Hash: testHash,
			ActiveState: "fail\x00ed" + strings.Repeat("x", 40), Error: strings.Repeat("é<\"\\", 200)})
	}
	if err := hb.Validate(); err == nil {
		t.Fatal("unclamped heartbeat valid")
	}
	if n := hb.Clamp(); n != 3 {
		t.Fatalf("dropped %d reports, want 3", n)
	}
	if err := hb.Validate(); err != nil {
		t.Fatalf("clamped heartbeat invalid: %v", err)
	}
	if len(hb.Units) != MaxUnitsPerMachine || hb.Units[0].ActiveState != "fail?ed"+strings.Repeat("x", MaxReportStateLen-7) || len(hb.Units[0].Error) != MaxReportErrorLen {
		t.Fatalf("clamped report %+v", hb.Units[0])
	}
	b, _ := json.Marshal(hb)
	if len(b) > MaxHeartbeatSize {
		t.Fatalf("clamped heartbeat %d bytes, over %d", len(b), MaxHeartbeatSize)
	}
}

// The engine places no more units on a machine than its heartbeat can
// report, global units included, and says why.
func TestMachineUnitLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("schedules 4096 units")
	}
	s := newSim(t, mach("m1"))
	opts, _ := unitfile.ParseUnitFile([]byte(unitText()))
	var cmds []*Command
	for i := 0; i < MaxUnitsPerMachine-1; i++ {
		cmds = append(cmds, &Command{Op: OpCreateUnit, Unit: &UnitSpec{Name: fmt.Sprintf("u%04d.service", i), Options: opts, Desired: unitfile.Launched}})
	}
	for _, c := range cmds {
		if _, err := s.store.Propose(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	s.submit("global.service", unitfile.Launched, "Global=true")
	s.reconcile()
	if n := s.count("m1"); n != MaxUnitsPerMachine-1 {
		t.Fatalf("%d units on m1, want %d", n, MaxUnitsPerMachine-1)
	}
	s.submit("more.service", unitfile.Launched)
	s.submit("pinned.service", unitfile.Launched, "MachineID=m1")
	s.reconcile()
	for _, n := range []string{"more.service", "pinned.service"} {
		if w, r := s.where(n), s.reason(n); w != "" || !strings.Contains(r, "the most one machine may") {
			t.Fatalf("%s on %q (%s): want unplaced, machine full", n, w, r)
		}
	}
	if got := len(s.store.State().Assigned("m1")); got != MaxUnitsPerMachine {
		t.Fatalf("m1 runs %d units, limit %d", got, MaxUnitsPerMachine)
	}
	// Room again: one goes.
	s.setDesired("u0000.service", unitfile.Inactive)
	s.reconcile()
	if s.where("more.service") == "" && s.where("pinned.service") == "" {
		t.Fatal("nothing placed once m1 had room")
	}
}
