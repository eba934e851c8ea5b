package schedule

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
)

// DesiredState is what the operator asked for a unit; fleet calls it the
// target state. The agent's achieved state uses the same three words.
type DesiredState string

const (
	// Inactive: known to the cluster, on no machine.
	Inactive DesiredState = "inactive"
	// Loaded: written and linked on a machine, not started.
	Loaded DesiredState = "loaded"
	// Launched: started on a machine.
	Launched DesiredState = "launched"
)

// ParseDesiredState accepts exactly fleet's three state names.
func ParseDesiredState(s string) (DesiredState, error) {
	switch d := DesiredState(s); d {
	case Inactive, Loaded, Launched:
		return d, nil
	}
	return "", fmt.Errorf("invalid desired state %q: use inactive, loaded or launched", s)
}

// UnitOption is one line of a unit file; the JSON names are fleet's.
type UnitOption struct {
	Section string `json:"section"`
	Name    string `json:"name"`
	Value   string `json:"value"`
}

// Limits that keep one request from bloating the replicated state.
const (
	// MaxUnitNameLen is systemd's UNIT_NAME_MAX.
	MaxUnitNameLen = 256
	// MaxUnitFileSize bounds the serialized unit file.
	MaxUnitFileSize = 256 << 10
	// MaxUnitOptions bounds the number of lines of one unit.
	MaxUnitOptions = 4096
)

var unitTypes = map[string]bool{
	"service": true, "socket": true, "busname": true, "target": true, "snapshot": true,
	"device": true, "mount": true, "automount": true, "swap": true, "timer": true,
	"path": true, "slice": true, "scope": true,
}

// ValidateName checks that name is a systemd unit name fleet can schedule
// (systemd's unit_name_is_valid, as fleet applies it).
func ValidateName(name string) error {
	if name == "" {
		return errors.New("unit name is empty: give a name like web.service")
	}
	if len(name) > MaxUnitNameLen {
		return fmt.Errorf("unit name is %d bytes, over systemd's limit of %d", len(name), MaxUnitNameLen)
	}
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return fmt.Errorf("unit name %q has no type suffix: add one, e.g. %s.service", name, name)
	}
	if dot == len(name)-1 {
		return fmt.Errorf("unit name %q ends in \".\": add a type, e.g. %sservice", name, name)
	}
	if t := name[dot+1:]; !unitTypes[t] {
		return fmt.Errorf("unit name %q has unknown type %q: use one of service, socket, timer, path, mount, target", name, t)
	}
	if dot == 0 {
		return fmt.Errorf("unit name %q has an empty prefix", name)
	}
	if name[0] == '@' {
		return fmt.Errorf("unit name %q starts with \"@\": put the template name first, e.g. web@1.service", name)
	}
	for _, r := range name[:dot] {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(`:-_.\@`, r)
		if !ok {
			return fmt.Errorf("unit name %q contains %q: use letters, digits and :-_.\\@ only", name, r)
		}
	}
	if strings.Count(name[:dot], "@") > 1 {
		return fmt.Errorf("unit name %q has more than one \"@\"", name)
	}
	return nil
}

// NameInfo splits a unit name the way systemd's specifiers see it.
type NameInfo struct {
	FullName string // foo@bar.service (%n)
	Name     string // foo@bar (%N)
	Prefix   string // foo (%p)
	Instance string // bar (%i)
	Type     string // service
}

// ParseName splits a (valid) unit name into its parts.
func ParseName(name string) NameInfo {
	ni := NameInfo{FullName: name, Name: name}
	if dot := strings.LastIndexByte(name, '.'); dot >= 0 {
		ni.Name, ni.Type = name[:dot], name[dot+1:]
	}
	ni.Prefix = ni.Name
	if at := strings.IndexByte(ni.Name, '@'); at >= 0 {
		ni.Prefix, ni.Instance = ni.Name[:at], ni.Name[at+1:]
	}
	return ni
}

// IsTemplate reports whether name is a template (foo@.service).
func IsTemplate(name string) bool {
	ni := ParseName(name)
	return strings.Contains(ni.Name, "@") && ni.Instance == ""
}

// TemplateOf returns the template an instance name comes from
// (foo@1.service -> foo@.service), and false for other names.
func TemplateOf(name string) (string, bool) {
	ni := ParseName(name)
	if ni.Instance == "" || !strings.Contains(ni.Name, "@") {
		return "", false
	}
	return ni.Prefix + "@." + ni.Type, true
}

// expand applies the specifiers fleet supports in [X-Fleet] values.
func (ni NameInfo) expand(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	return strings.NewReplacer("%n", ni.FullName, "%N", ni.Name, "%p", ni.Prefix, "%i", ni.Instance).Replace(s)
}

// ParseUnitFile parses unit file text into options with go-systemd's parser.
func ParseUnitFile(contents []byte) ([]UnitOption, error) {
	if len(contents) > MaxUnitFileSize {
		return nil, fmt.Errorf("unit file is %d bytes, over the %d-byte limit: move data out of the unit", len(contents), MaxUnitFileSize)
	}
	opts, err := unit.DeserializeOptions(bytes.NewReader(contents))
	if err != nil {
		return nil, fmt.Errorf("unit file does not parse: %v", err)
	}
	out := make([]UnitOption, len(opts))
	for i, o := range opts {
		out[i] = UnitOption{Section: o.Section, Name: o.Name, Value: o.Value}
	}
	return out, nil
}

// Serialize renders options back into unit file text (the bytes the agent
// writes and the hash covers).
func Serialize(opts []UnitOption) []byte {
	uo := make([]*unit.UnitOption, len(opts))
	for i := range opts {
		uo[i] = &unit.UnitOption{Section: opts[i].Section, Name: opts[i].Name, Value: opts[i].Value}
	}
	b, _ := io.ReadAll(unit.Serialize(uo))
	return b
}

// Hash is fleet's unit hash: SHA-1 of the serialized unit file, in hex.
func Hash(opts []UnitOption) string {
	sum := sha1.Sum(Serialize(opts))
	return hex.EncodeToString(sum[:])
}

// Requirements are the parsed [X-Fleet] options of one unit, with the
// specifiers %n %N %p %i already expanded against the unit's name.
type Requirements struct {
	MachineID string
	MachineOf []string
	// Metadata: every key must match (AND); any listed value of a key (OR).
	Metadata  map[string][]string
	Conflicts []string
	Replaces  []string
	Global    bool
}

// The [X-Fleet] keys fleet accepts, with their deprecated spellings.
var xfleetKeys = map[string]string{
	"MachineID":                  "MachineID",
	"X-ConditionMachineID":       "MachineID",
	"X-ConditionMachineBootID":   "MachineID",
	"MachineOf":                  "MachineOf",
	"X-ConditionMachineOf":       "MachineOf",
	"MachineMetadata":            "MachineMetadata",
	"X-ConditionMachineMetadata": "MachineMetadata",
	"Conflicts":                  "Conflicts",
	"X-Conflicts":                "Conflicts",
	"Global":                     "Global",
	"Replaces":                   "Replaces",
}

// splitValues splits one option value into whitespace-separated words,
// honouring double quotes (MachineMetadata="a=b" "c=d").
func splitValues(v string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range v {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (r == ' ' || r == '\t'):
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", v)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "yes", "1", "on", "t":
		return true, nil
	case "false", "no", "0", "off", "f":
		return false, nil
	}
	return false, fmt.Errorf("value %q of Global is not a boolean: use true or false", s)
}

// ParseRequirements reads and validates the [X-Fleet] section of a unit
// named name. Unknown keys, malformed values and combinations fleet rejects
// are errors.
func ParseRequirements(name string, opts []UnitOption) (*Requirements, error) {
	ni := ParseName(name)
	r := &Requirements{}
	for _, o := range opts {
		if o.Section != "X-Fleet" {
			continue
		}
		key, ok := xfleetKeys[o.Name]
		if !ok {
			return nil, fmt.Errorf("unrecognized requirement in [X-Fleet] section: %q (known: MachineID, MachineOf, MachineMetadata, Conflicts, Global, Replaces)", o.Name)
		}
		words, err := splitValues(ni.expand(o.Value))
		if err != nil {
			return nil, fmt.Errorf("[X-Fleet] %s: %v", o.Name, err)
		}
		switch key {
		case "MachineID":
			if len(words) != 1 {
				return nil, fmt.Errorf("[X-Fleet] %s needs exactly one machine ID, got %q", o.Name, o.Value)
			}
			if r.MachineID != "" && r.MachineID != words[0] {
				return nil, fmt.Errorf("[X-Fleet] MachineID given twice with different values (%q, %q)", r.MachineID, words[0])
			}
			r.MachineID = words[0]
		case "MachineOf":
			for _, w := range words {
				if err := ValidateName(w); err != nil {
					return nil, fmt.Errorf("[X-Fleet] MachineOf: %v", err)
				}
				r.MachineOf = append(r.MachineOf, w)
			}
		case "MachineMetadata":
			for _, w := range words {
				k, v, ok := strings.Cut(w, "=")
				if !ok || k == "" || v == "" || strings.Contains(v, "=") {
					return nil, fmt.Errorf("[X-Fleet] MachineMetadata %q is not key=value", w)
				}
				if r.Metadata == nil {
					r.Metadata = map[string][]string{}
				}
				r.Metadata[k] = append(r.Metadata[k], v)
			}
		case "Conflicts", "Replaces":
			for _, w := range words {
				if _, err := path.Match(w, ""); err != nil {
					return nil, fmt.Errorf("[X-Fleet] %s: bad glob %q: %v", o.Name, w, err)
				}
				if key == "Conflicts" {
					r.Conflicts = append(r.Conflicts, w)
				} else {
					r.Replaces = append(r.Replaces, w)
				}
			}
		case "Global":
			if len(words) != 1 {
				return nil, fmt.Errorf("[X-Fleet] Global needs one value, got %q", o.Value)
			}
			// The last Global line wins, as in fleet.
			if r.Global, err = parseBool(words[0]); err != nil {
				return nil, fmt.Errorf("[X-Fleet] Global: %v", err)
			}
		}
	}
	for _, peer := range r.MachineOf {
		for _, c := range r.Conflicts {
			if globMatch(c, peer) {
				return nil, fmt.Errorf("unresolvable requirements: MachineOf %q matches Conflicts %q", peer, c)
			}
		}
		for _, rp := range r.Replaces {
			if globMatch(rp, peer) {
				return nil, fmt.Errorf("unresolvable requirements: MachineOf %q matches Replaces %q", peer, rp)
			}
		}
		if peer == name {
			return nil, fmt.Errorf("[X-Fleet] MachineOf names the unit itself (%q)", name)
		}
	}
	switch {
	case r.MachineID != "" && len(r.MachineOf) > 0:
		return nil, errors.New("[X-Fleet] MachineID cannot be used with MachineOf")
	case r.MachineID != "" && len(r.Conflicts) > 0:
		return nil, errors.New("[X-Fleet] MachineID cannot be used with Conflicts")
	case r.Global && (r.MachineID != "" || len(r.MachineOf) > 0 || len(r.Conflicts) > 0 || len(r.Replaces) > 0):
		return nil, errors.New("[X-Fleet] Global=true allows only MachineMetadata alongside it")
	}
	return r, nil
}

func globMatch(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}

// MatchesMetadata reports whether md satisfies the unit's MachineMetadata.
func (r *Requirements) MatchesMetadata(md map[string]string) bool {
	for k, vals := range r.Metadata {
		have, ok := md[k]
		if !ok {
			return false
		}
		found := false
		for _, v := range vals {
			if v == have {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Unit is one unit known to the cluster. Values in State are immutable:
// commands replace the pointer with a modified copy, so readers may keep
// them without locking.
type Unit struct {
	Name    string       `json:"name"`
	Options []UnitOption `json:"options"`
	Desired DesiredState `json:"desiredState"`
	Hash    string       `json:"hash"`
	// Machine is the target machine; empty while unscheduled.
	Machine string `json:"machineID,omitempty"`
	// Reason says why an unscheduled unit that should run is not placed.
	Reason string `json:"reason,omitempty"`

	req *Requirements
}

// Req returns the unit's parsed requirements.
func (u *Unit) Req() *Requirements { return u.req }

// Global reports whether the unit runs on every eligible machine.
func (u *Unit) Global() bool { return u.req.Global }

// NewUnit validates a unit submission: its name, its options and their
// [X-Fleet] requirements. Templates may be submitted but never scheduled.
func NewUnit(name string, opts []UnitOption, desired DesiredState) (*Unit, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if _, err := ParseDesiredState(string(desired)); err != nil {
		return nil, err
	}
	if len(opts) == 0 {
		return nil, fmt.Errorf("unit %s has no options: submit a unit file with at least one section", name)
	}
	if len(opts) > MaxUnitOptions {
		return nil, fmt.Errorf("unit %s has %d options, over the limit of %d", name, len(opts), MaxUnitOptions)
	}
	size := 0
	for _, o := range opts {
		if o.Section == "" || o.Name == "" {
			return nil, fmt.Errorf("unit %s: option with empty section or name (section %q, name %q)", name, o.Section, o.Name)
		}
		if err := checkOption(o); err != nil {
			return nil, fmt.Errorf("unit %s: %v", name, err)
		}
		size += len(o.Section) + len(o.Name) + len(o.Value) + 4
	}
	if size > MaxUnitFileSize {
		return nil, fmt.Errorf("unit %s is about %d bytes, over the %d-byte limit: move data out of the unit", name, size, MaxUnitFileSize)
	}
	if err := checkRoundTrip(opts); err != nil {
		return nil, fmt.Errorf("unit %s: %v", name, err)
	}
	if IsTemplate(name) && desired != Inactive {
		return nil, fmt.Errorf("unit %s is a template: start an instance such as %s", name, strings.Replace(name, "@.", "@1.", 1))
	}
	req, err := ParseRequirements(name, opts)
	if err != nil {
		return nil, fmt.Errorf("unit %s: %v", name, err)
	}
	o := append([]UnitOption(nil), opts...)
	return &Unit{Name: name, Options: o, Desired: desired, Hash: Hash(o), req: req}, nil
}

// checkOption refuses section and option names a unit file cannot hold.
func checkOption(o UnitOption) error {
	switch {
	case strings.ContainsAny(o.Section, "[]\r\n") || strings.TrimSpace(o.Section) != o.Section:
		return fmt.Errorf("malformed section name %q", o.Section)
	case strings.ContainsAny(o.Name, "=[]#;\r\n \t"):
		return fmt.Errorf("[%s] malformed option name %q", o.Section, o.Name)
	}
	return nil
}

// checkRoundTrip refuses options that would not survive being written as
// a unit file and read back (by the agent, and by systemd): what the
// cluster stores must be exactly what runs. Continuation lines as the
// parser keeps them ("a \\\n b") survive; bare line breaks, a trailing
// backslash or padding whitespace do not.
func checkRoundTrip(opts []UnitOption) error {
	back, err := ParseUnitFile(Serialize(opts))
	if err != nil {
		return fmt.Errorf("options do not make a valid unit file: %v", err)
	}
	// Serialize groups options by section (first-seen order); compare in
	// that order.
	var order []string
	bySection := map[string][]UnitOption{}
	for _, o := range opts {
		if _, ok := bySection[o.Section]; !ok {
			order = append(order, o.Section)
		}
		bySection[o.Section] = append(bySection[o.Section], o)
	}
	grouped := make([]UnitOption, 0, len(opts))
	for _, sec := range order {
		grouped = append(grouped, bySection[sec]...)
	}
	opts = grouped
	for i, o := range opts {
		if i >= len(back) || back[i] != o {
			got := "nothing"
			if i < len(back) {
				got = fmt.Sprintf("%q", back[i].Value)
			}
			return fmt.Errorf("[%s] %s: value %q would be read back from the unit file as %s: remove line breaks, trailing backslashes and surrounding whitespace", o.Section, o.Name, o.Value, got)
		}
	}
	if len(back) != len(opts) {
		return fmt.Errorf("options would be read back from the unit file as %d options, not %d", len(back), len(opts))
	}
	return nil
}

// Contents returns the unit file text the agent writes.
func (u *Unit) Contents() []byte { return Serialize(u.Options) }

// Machine is one member of the cluster as the scheduler sees it.
type Machine struct {
	ID       string            `json:"id"`
	PublicIP string            `json:"primaryIP"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// ParseMetadata parses "k=v,k2=v2" (fleet's metadata flag) into a map.
func ParseMetadata(s string) (map[string]string, error) {
	md := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("metadata %q is not key=value", kv)
		}
		md[k] = v
	}
	return md, nil
}

// sameMachine compares two machine records.
func sameMachine(a, b *Machine) bool {
	if a.ID != b.ID || a.PublicIP != b.PublicIP || len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for k, v := range a.Metadata {
		if bv, ok := b.Metadata[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
