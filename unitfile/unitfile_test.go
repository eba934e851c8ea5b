package unitfile

import (
	"reflect"
	"strings"
	"testing"
)

// unitText is a unit file with the given [X-Fleet] lines.
func unitText(xfleet ...string) string {
	return "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\n" + strings.Join(xfleet, "\n") + "\n"
}

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
