package schedule

// The replicated records: a Unit (its options, desired state, hash and
// target machine) and a Machine.

import (
	"fmt"
	"sort"
	"strings"
)

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
