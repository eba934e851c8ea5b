package unitfile

// Placement rules: a unit's [X-Fleet] section (MachineID, MachineOf,
// MachineMetadata, Conflicts, Global, Replaces) parsed into Requirements.

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

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
			if GlobMatch(c, peer) {
				return nil, fmt.Errorf("unresolvable requirements: MachineOf %q matches Conflicts %q", peer, c)
			}
		}
		for _, rp := range r.Replaces {
			if GlobMatch(rp, peer) {
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

func GlobMatch(pattern, name string) bool {
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
