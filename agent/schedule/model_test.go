package schedule

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		err  string // substring; "" = valid
	}{
		{"web.service", ""},
		{"mongo@1.service", ""},
		{"mongo@.service", ""},
		{"a-b_c:d.e\\x.timer", ""},
		{"", "empty"},
		{"web", "no type suffix"},
		{"web.", `ends in "."`},
		{"web.txt", `unknown type "txt"`},
		{"@1.service", `starts with "@"`},
		{"we b.service", `contains ' '`},
		{"a@b@c.service", "more than one"},
		{".service", "empty prefix"},
		{strings.Repeat("a", 300) + ".service", "over systemd's limit"},
	}
	for _, tc := range tests {
		err := ValidateName(tc.name)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ValidateName(%q) = %v, want %q", tc.name, err, tc.err)
		}
	}
}

func TestParseRequirements(t *testing.T) {
	tests := []struct {
		name   string
		unit   string
		xfleet []string
		want   *Requirements
		err    string
	}{
		{name: "none", unit: "a.service", want: &Requirements{}},
		{name: "specifiers", unit: "web@7.service", xfleet: []string{"Conflicts=%p@*.service", "MachineOf=%p-data@%i.service", "MachineMetadata=inst=%i"},
			want: &Requirements{Conflicts: []string{"web@*.service"}, MachineOf: []string{"web-data@7.service"}, Metadata: map[string][]string{"inst": {"7"}}}},
		{name: "quoted metadata", unit: "a.service", xfleet: []string{`MachineMetadata="region=us-east-1" "diskType=SSD"`, "MachineMetadata=region=us-west-1"},
			want: &Requirements{Metadata: map[string][]string{"region": {"us-east-1", "us-west-1"}, "diskType": {"SSD"}}}},
		{name: "deprecated names", unit: "a.service", xfleet: []string{"X-ConditionMachineID=abc", "X-ConditionMachineMetadata=a=b"},
			want: &Requirements{MachineID: "abc", Metadata: map[string][]string{"a": {"b"}}}},
		{name: "global last wins", unit: "a.service", xfleet: []string{"Global=true", "Global=false", "Global=yes"}, want: &Requirements{Global: true}},
		{name: "replaces", unit: "a.service", xfleet: []string{"Replaces=b.service c*.service"}, want: &Requirements{Replaces: []string{"b.service", "c*.service"}}},
		{name: "unknown key", unit: "a.service", xfleet: []string{"MachineIDs=x"}, err: `unrecognized requirement in [X-Fleet] section: "MachineIDs"`},
		{name: "bad metadata", unit: "a.service", xfleet: []string{"MachineMetadata=region"}, err: "not key=value"},
		{name: "bad glob", unit: "a.service", xfleet: []string{"Conflicts=[ab"}, err: "bad glob"},
		{name: "bad bool", unit: "a.service", xfleet: []string{"Global=maybe"}, err: "not a boolean"},
		{name: "unterminated quote", unit: "a.service", xfleet: []string{`MachineMetadata="a=b`}, err: "unterminated quote"},
		{name: "MachineID+Conflicts", unit: "a.service", xfleet: []string{"MachineID=x", "Conflicts=b*"}, err: "MachineID cannot be used with Conflicts"},
		{name: "MachineID+MachineOf", unit: "a.service", xfleet: []string{"MachineID=x", "MachineOf=b.service"}, err: "MachineID cannot be used with MachineOf"},
		{name: "Global+Conflicts", unit: "a.service", xfleet: []string{"Global=true", "Conflicts=b*"}, err: "Global=true allows only MachineMetadata"},
		{name: "peer conflicts", unit: "a.service", xfleet: []string{"MachineOf=b.service", "Conflicts=b*"}, err: "unresolvable requirements"},
		{name: "peer replaced", unit: "a.service", xfleet: []string{"MachineOf=b.service", "Replaces=b.service"}, err: "unresolvable requirements"},
		{name: "bad peer name", unit: "a.service", xfleet: []string{"MachineOf=b"}, err: "no type suffix"},
		{name: "two MachineIDs", unit: "a.service", xfleet: []string{"MachineID=x", "MachineID=y"}, err: "given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := ParseUnitFile([]byte(unitText(tc.xfleet...)))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseRequirements(tc.unit, opts)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBadSubmissionsStoreNothing(t *testing.T) {
	s := NewMemStore()
	good, _ := ParseUnitFile([]byte(unitText()))
	huge := []UnitOption{{Section: "Service", Name: "Environment", Value: strings.Repeat("x", MaxUnitFileSize)}}
	tests := []struct {
		name string
		spec UnitSpec
		err  string
	}{
		{"bad name", UnitSpec{Name: "web", Options: good, Desired: Launched}, "no type suffix"},
		{"no options", UnitSpec{Name: "a.service", Desired: Launched}, "no options"},
		{"bad desired", UnitSpec{Name: "a.service", Options: good, Desired: "running"}, "invalid desired state"},
		{"huge", UnitSpec{Name: "a.service", Options: huge, Desired: Launched}, "over the"},
		{"unknown xfleet", UnitSpec{Name: "a.service", Options: append(append([]UnitOption{}, good...), UnitOption{"X-Fleet", "Bogus", "1"}), Desired: Launched}, "unrecognized requirement"},
		{"template launched", UnitSpec{Name: "a@.service", Options: good, Desired: Launched}, "template"},
		{"newline in value", UnitSpec{Name: "a.service", Options: []UnitOption{{"Service", "ExecStart", "/bin/a\n[X-Fleet]"}}, Desired: Launched}, "remove line breaks"},
		{"trailing backslash", UnitSpec{Name: "a.service", Options: []UnitOption{{"Service", "ExecStart", "/bin/a \\"}}, Desired: Launched}, "trailing backslashes"},
		{"padded value", UnitSpec{Name: "a.service", Options: []UnitOption{{"Service", "ExecStart", " /bin/a"}}, Desired: Launched}, "surrounding whitespace"},
		{"bad option name", UnitSpec{Name: "a.service", Options: []UnitOption{{"Service", "Exec Start", "/bin/a"}}, Desired: Launched}, "malformed option name"},
		{"bad section", UnitSpec{Name: "a.service", Options: []UnitOption{{"Serv]ice", "ExecStart", "/bin/a"}}, Desired: Launched}, "malformed section"},
		{"long name", UnitSpec{Name: strings.Repeat("a", MaxUnitNameLen) + ".service", Options: good, Desired: Launched}, "over systemd's limit"},
		{"name chars", UnitSpec{Name: "a/b.service", Options: good, Desired: Launched}, "contains '/'"},
		{"two @", UnitSpec{Name: "a@b@c.service", Options: good, Desired: Launched}, "more than one"},
		{"too many options", UnitSpec{Name: "a.service", Options: make([]UnitOption, MaxUnitOptions+1), Desired: Launched}, "over the limit of 4096"},
		{"machineid and machineof", UnitSpec{Name: "a.service", Options: append(append([]UnitOption{}, good...), UnitOption{"X-Fleet", "MachineID", "m1"}, UnitOption{"X-Fleet", "MachineOf", "b.service"}), Desired: Launched}, "MachineID cannot be used with MachineOf"},
		{"global and conflicts", UnitSpec{Name: "a.service", Options: append(append([]UnitOption{}, good...), UnitOption{"X-Fleet", "Global", "true"}, UnitOption{"X-Fleet", "Conflicts", "b*"}), Desired: Launched}, "Global=true allows only"},
		{"two machine ids", UnitSpec{Name: "a.service", Options: append(append([]UnitOption{}, good...), UnitOption{"X-Fleet", "MachineID", "m1"}, UnitOption{"X-Fleet", "MachineID", "m2"}), Desired: Launched}, "given twice"},
		{"bad glob", UnitSpec{Name: "a.service", Options: append(append([]UnitOption{}, good...), UnitOption{"X-Fleet", "Replaces", "b["}), Desired: Launched}, "bad glob"},
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
	if _, err := ParseUnitFile(bytes.Repeat([]byte("#"), MaxUnitFileSize+1)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("huge unit file: %v", err)
	}
	if _, err := ParseUnitFile([]byte("[Service\nExecStart=x\n")); err == nil {
		t.Fatal("malformed unit file parsed")
	}
}

func TestContinuationLinesAccepted(t *testing.T) {
	text := "[Service]\nExecStart=/usr/bin/docker run \\\n  --name web \\\n  nginx\nDescription=trailing space   \n"
	opts, err := ParseUnitFile([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	u, err := NewUnit("web.service", opts, Launched)
	if err != nil {
		t.Fatalf("multi-line ExecStart refused: %v", err)
	}
	if !strings.Contains(string(u.Contents()), "docker run \\\n  --name web") {
		t.Fatalf("contents:\n%s", u.Contents())
	}
}

func TestHashAndTemplates(t *testing.T) {
	a, _ := ParseUnitFile([]byte("[Service]\nExecStart=/bin/a\n"))
	b, _ := ParseUnitFile([]byte("[Service]\nExecStart=/bin/b\n"))
	if Hash(a) == Hash(b) || Hash(a) != Hash(append([]UnitOption{}, a...)) || len(Hash(a)) != 40 {
		t.Fatalf("hashes: %s %s", Hash(a), Hash(b))
	}
	if tpl, ok := TemplateOf("mongo@1.service"); !ok || tpl != "mongo@.service" {
		t.Fatalf("TemplateOf = %q %v", tpl, ok)
	}
	if _, ok := TemplateOf("mongo.service"); ok {
		t.Fatal("plain unit has a template")
	}
	if !IsTemplate("mongo@.service") || IsTemplate("mongo@1.service") {
		t.Fatal("IsTemplate wrong")
	}
}

func TestSnapshotRestore(t *testing.T) {
	s := newSim(t, mach("m1", "a=b"), mach("m2"))
	s.submit("x.service", Launched, "Conflicts=y*")
	s.submit("g.service", Launched, "Global=true")
	s.submit("y.service", Loaded)
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
	opts, _ := ParseUnitFile([]byte(unitText()))
	if _, err := ls.Propose(context.Background(), &Command{Op: OpCreateUnit, Unit: &UnitSpec{Name: "a.service", Options: opts, Desired: Launched}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Propose(context.Background(), &Command{Op: OpCreateUnit, Unit: &UnitSpec{Name: "a.service", Options: opts, Desired: Launched}}); err != ErrUnitExists {
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
	s.submit("a.service", Launched)
	s.reconcile()
	m := s.where("a.service")
	h := s.store.State().Unit("a.service").Hash
	s.submit("a.service", Launched, "MachineMetadata=x=y")
	if got := s.store.State().Unit("a.service"); got.Machine != m || got.Hash == h {
		t.Fatalf("replaced unit: machine %q (was %q), hash changed %v", got.Machine, m, got.Hash != h)
	}
	// The engine re-checks the new requirements: no machine has x=y.
	s.reconcile()
	if s.where("a.service") != "" || !strings.Contains(s.reason("a.service"), "MachineMetadata") {
		t.Fatalf("after replace: on %q, %q", s.where("a.service"), s.reason("a.service"))
	}
	if err := s.trySubmit("a.service", Launched, "MachineMetadata=x=y"); err != ErrUnitExists {
		t.Fatalf("identical resubmit: %v", err)
	}
	s.submit("a.service", Inactive)
	if u := s.store.State().Unit("a.service"); u.Desired != Inactive || u.Machine != "" {
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
		opts, err := ParseUnitFile([]byte(text))
		if err != nil {
			return
		}
		u, err := NewUnit(name, opts, Inactive)
		if err != nil {
			return
		}
		back, err := ParseUnitFile(u.Contents())
		if err != nil {
			t.Fatalf("serialized unit does not parse: %v\n%s", err, u.Contents())
		}
		if Hash(back) != u.Hash {
			t.Fatalf("hash changed through serialize/parse:\n%q\n%q", opts, back)
		}
	})
}
