package schedule

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/pith-os/pith/unitfile"
)

func TestBadSubmissionsStoreNothing(t *testing.T) {
	s := NewMemStore()
	good, _ := unitfile.ParseUnitFile([]byte(unitText()))
	huge := []unitfile.UnitOption{{Section: "Service", Name: "Environment", Value: strings.Repeat("x", unitfile.MaxUnitFileSize)}}
	tests := []struct {
		name string
		spec UnitSpec
		err  string
	}{
		{"bad name", UnitSpec{Name: "web", Options: good, Desired: unitfile.Launched}, "no type suffix"},
		{"no options", UnitSpec{Name: "a.service", Desired: unitfile.Launched}, "no options"},
		{"bad desired", UnitSpec{Name: "a.service", Options: good, Desired: "running"}, "invalid desired state"},
		{"huge", UnitSpec{Name: "a.service", Options: huge, Desired: unitfile.Launched}, "over the"},
		{"unknown xfleet", UnitSpec{Name: "a.service", Options: append(append([]unitfile.UnitOption{}, good...), unitfile.UnitOption{Section: "X-Fleet", Name: "Bogus", Value: "1"}), Desired: unitfile.Launched}, "unrecognized requirement"},
		{"template launched", UnitSpec{Name: "a@.service", Options: good, Desired: unitfile.Launched}, "template"},
		{"newline in value", UnitSpec{Name: "a.service", Options: []unitfile.UnitOption{{Section: "Service", Name: "ExecStart", Value: "/bin/a\n[X-Fleet]"}}, Desired: unitfile.Launched}, "remove line breaks"},
		{"trailing backslash", UnitSpec{Name: "a.service", Options: []unitfile.UnitOption{{Section: "Service", Name: "ExecStart", Value: "/bin/a \\"}}, Desired: unitfile.Launched}, "trailing backslashes"},
		{"padded value", UnitSpec{Name: "a.service", Options: []unitfile.UnitOption{{Section: "Service", Name: "ExecStart", Value: " /bin/a"}}, Desired: unitfile.Launched}, "surrounding whitespace"},
		{"bad option name", UnitSpec{Name: "a.service", Options: []unitfile.UnitOption{{Section: "Service", Name: "Exec Start", Value: "/bin/a"}}, Desired: unitfile.Launched}, "malformed option name"},
		{"bad section", UnitSpec{Name: "a.service", Options: []unitfile.UnitOption{{Section: "Serv]ice", Name: "ExecStart", Value: "/bin/a"}}, Desired: unitfile.Launched}, "malformed section"},
		{"long name", UnitSpec{Name: strings.Repeat("a", unitfile.MaxUnitNameLen) + ".service", Options: good, Desired: unitfile.Launched}, "over systemd's limit"},
		{"name chars", UnitSpec{Name: "a/b.service", Options: good, Desired: unitfile.Launched}, "contains '/'"},
		{"two @", UnitSpec{Name: "a@b@c.service", Options: good, Desired: unitfile.Launched}, "more than one"},
		{"too many options", UnitSpec{Name: "a.service", Options: make([]unitfile.UnitOption, unitfile.MaxUnitOptions+1), Desired: unitfile.Launched}, "over the limit of 4096"},
		{"machineid and machineof", UnitSpec{Name: "a.service", Options: append(append([]unitfile.UnitOption{}, good...), unitfile.UnitOption{Section: "X-Fleet", Name: "MachineID", Value: "m1"}, unitfile.UnitOption{Section: "X-Fleet", Name: "MachineOf", Value: "b.service"}), Desired: unitfile.Launched}, "MachineID cannot be used with MachineOf"},
		{"global and conflicts", UnitSpec{Name: "a.service", Options: append(append([]unitfile.UnitOption{}, good...), unitfile.UnitOption{Section: "X-Fleet", Name: "Global", Value: "true"}, unitfile.UnitOption{Section: "X-Fleet", Name: "Conflicts", Value: "b*"}), Desired: unitfile.Launched}, "Global=true allows only"},
		{"two machine ids", UnitSpec{Name: "a.service", Options: append(append([]unitfile.UnitOption{}, good...), unitfile.UnitOption{Section: "X-Fleet", Name: "MachineID", Value: "m1"}, unitfile.UnitOption{Section: "X-Fleet", Name: "MachineID", Value: "m2"}), Desired: unitfile.Launched}, "given twice"},
		{"bad glob", UnitSpec{Name: "a.service", Options: append(append([]unitfile.UnitOption{}, good...), unitfile.UnitOption{Section: "X-Fleet", Name: "Replaces", Value: "b["}), Desired: unitfile.Launched}, "bad glob"},
	}
	for _, tc := range tests {
		spec := tc.spec
		_, err := s.Propose(context.Background(), &Command{Op: OpCreateUnit, Unit: &spec})
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		}
	}
	if n := len(s.State().Units()); n != 0 {
		t.Fatalf("%d units stored after bad submissions", n)
	}
	if _, err := unitfile.ParseUnitFile(bytes.Repeat([]byte("#"), unitfile.MaxUnitFileSize+1)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("huge unit file: %v", err)
	}
	if _, err := unitfile.ParseUnitFile([]byte("[Service\nExecStart=x\n")); err == nil {
		t.Fatal("malformed unit file parsed")
	}
}

func TestContinuationLinesAccepted(t *testing.T) {
	text := "[Service]\nExecStart=/usr/bin/docker run \\\n  --name web \\\n  nginx\nDescription=trailing space   \n"
	opts, err := unitfile.ParseUnitFile([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	u, err := NewUnit("web.service", opts, unitfile.Launched)
	if err != nil {
		t.Fatalf("multi-line ExecStart refused: %v", err)
	}
	if !strings.Contains(string(u.Contents()), "docker run \\\n  --name web") {
		t.Fatalf("contents:\n%s", u.Contents())
	}
}

func TestSnapshotRestore(t *testing.T) {
	s := newSim(t, mach("m1", "a=b"), mach("m2"))
	s.submit("x.service", unitfile.Launched, "Conflicts=y*")
	s.submit("g.service", unitfile.Launched, "Global=true")
	s.submit("y.service", unitfile.Loaded)
	s.reconcile()
	var buf bytes.Buffer
	if err := s.store.State().Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r := NewState()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	orig := s.store.State()
	if names(r.Units()) != names(orig.Units()) || r.Index() != orig.Index() {
		t.Fatalf("restored units %q index %d, want %q %d", names(r.Units()), r.Index(), names(orig.Units()), orig.Index())
	}
	for _, u := range orig.Units() {
		ru := r.Unit(u.Name)
		if ru.Machine != u.Machine || ru.Hash != u.Hash || ru.Desired != u.Desired || ru.Global() != u.Global() {
			t.Errorf("%s restored as %+v", u.Name, ru)
		}
	}
	for _, id := range []string{"m1", "m2"} {
		if names(r.Assigned(id)) != names(orig.Assigned(id)) {
			t.Errorf("%s assigned %q after restore, want %q", id, names(r.Assigned(id)), names(orig.Assigned(id)))
		}
	}
	if err := r.Restore(strings.NewReader("{")); err == nil {
		t.Fatal("garbage snapshot restored")
	}
}

func TestApplyLogEntries(t *testing.T) {
	st := NewState()
	r := st.Apply(7, []byte("{not json")).(ApplyResult)
	if r.Err == nil || st.Index() != 7 {
		t.Fatalf("garbage entry: %+v, index %d", r, st.Index())
	}
	b, _ := EncodeCommand(&Command{Op: "frobnicate"})
	if r := st.Apply(8, b).(ApplyResult); r.Err == nil || !strings.Contains(r.Err.Error(), "unknown schedule command") {
		t.Fatalf("unknown op: %+v", r)
	}
	// A LogStore over a "log" that applies entries to two replicas in order.
	a, c := NewState(), NewState()
	idx := uint64(8)
	ls := NewLogStore(a, func(_ context.Context, e []byte) (any, error) {
		idx++
		c.Apply(idx, e)
		return a.Apply(idx, e), nil
	})
	opts, _ := unitfile.ParseUnitFile([]byte(unitText()))
	if _, err := ls.Propose(context.Background(), &Command{Op: OpCreateUnit, Unit: &UnitSpec{Name: "a.service", Options: opts, Desired: unitfile.Launched}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Propose(context.Background(), &Command{Op: OpCreateUnit, Unit: &UnitSpec{Name: "a.service", Options: opts, Desired: unitfile.Launched}}); err != ErrUnitExists {
		t.Fatalf("duplicate create through the log: %v", err)
	}
	ls.Propose(context.Background(), &Command{Op: OpRegisterMachine, Machine: &Machine{ID: "m1"}})
	v, err := ls.Propose(context.Background(), &Command{Op: OpPlace, Term: 3, Placements: []Placement{{Unit: "a.service", To: "m1"}, {Unit: "b.service", To: "m1"}}})
	if err != nil || v.(PlaceResult) != (PlaceResult{Applied: 1, Skipped: 1}) {
		t.Fatalf("place: %v %v", v, err)
	}
	var sa, sc bytes.Buffer
	a.Save(&sa)
	c.Snapshot(&sc)
	if sa.String() != sc.String() {
		t.Fatalf("replicas diverged:\n%s\n%s", sa.String(), sc.String())
	}
}

func TestReplaceContents(t *testing.T) {
	s := newSim(t, mach("m1"), mach("m2"))
	s.submit("a.service", unitfile.Launched)
	s.reconcile()
	m := s.where("a.service")
	h := s.store.State().Unit("a.service").Hash
	s.submit("a.service", unitfile.Launched, "MachineMetadata=x=y")
	if got := s.store.State().Unit("a.service"); got.Machine != m || got.Hash == h {
		t.Fatalf("replaced unit: machine %q (was %q), hash changed %v", got.Machine, m, got.Hash != h)
	}
	// The engine re-checks the new requirements: no machine has x=y.
	s.reconcile()
	if s.where("a.service") != "" || !strings.Contains(s.reason("a.service"), "MachineMetadata") {
		t.Fatalf("after replace: on %q, %q", s.where("a.service"), s.reason("a.service"))
	}
	if err := s.trySubmit("a.service", unitfile.Launched, "MachineMetadata=x=y"); err != ErrUnitExists {
		t.Fatalf("identical resubmit: %v", err)
	}
	s.submit("a.service", unitfile.Inactive)
	if u := s.store.State().Unit("a.service"); u.Desired != unitfile.Inactive || u.Machine != "" {
		t.Fatalf("replace to inactive: %+v", u)
	}
}

// FuzzUnitFile: any input either fails with an error or yields a unit whose
// serialized file parses back to the same hash (what the agent writes is
// what the cluster stored).
func FuzzUnitFile(f *testing.F) {
	f.Add("mongo@1.service", unitText("Conflicts=mongo@*.service"))
	f.Add("a.service", unitText(`MachineMetadata="a=b" "c=d"`, "Global=true"))
	f.Add("x.timer", "[Timer]\nOnCalendar=daily\n")
	f.Add("b.service", "[Service]\nExecStart=/bin/sh -c 'echo \\\n continued'\n")
	f.Fuzz(func(t *testing.T, name, text string) {
		opts, err := unitfile.ParseUnitFile([]byte(text))
		if err != nil {
			return
		}
		u, err := NewUnit(name, opts, unitfile.Inactive)
		if err != nil {
			return
		}
		back, err := unitfile.ParseUnitFile(u.Contents())
		if err != nil {
			t.Fatalf("serialized unit does not parse: %v\n%s", err, u.Contents())
		}
		if unitfile.Hash(back) != u.Hash {
			t.Fatalf("hash changed through serialize/parse:\n%q\n%q", opts, back)
		}
	})
}
