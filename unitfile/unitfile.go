// Package unitfile is fleet's unit file as the scheduler (agent/schedule)
// and its clients (pithctl units) share it: names, desired states,
// options and their parsing, hashing and the checks that what the cluster
// stores is exactly what systemd runs, and the [X-Fleet] placement rules.
// It imports nothing of Pith's.
package unitfile

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
