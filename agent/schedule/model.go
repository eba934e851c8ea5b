package schedule

// The replicated records: a Unit (its options, desired state, hash and
// target machine) and a Machine.

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pith-os/pith/unitfile"
)

// Unit is one unit known to the cluster. Values in State are immutable:
// commands replace the pointer with a modified copy, so readers may keep
// them without locking.
type Unit struct {
	Name    string                `json:"name"`
	Options []unitfile.UnitOption `json:"options"`
	Desired unitfile.DesiredState `json:"desiredState"`
	Hash    string                `json:"hash"`
	// Machine is the target machine; empty while unscheduled.
	Machine string `json:"machineID,omitempty"`
	// Reason says why an unscheduled unit that should run is not placed.
	Reason string `json:"reason,omitempty"`

	req *unitfile.Requirements
}

// Req returns the unit's parsed requirements.
func (u *Unit) Req() *unitfile.Requirements { return u.req }

// Global reports whether the unit runs on every eligible machine.
func (u *Unit) Global() bool { return u.req.Global }

// NewUnit validates a unit submission (unitfile.Check: its name, its
// options and their [X-Fleet] requirements) and makes the unit. Templates
// may be submitted but never scheduled.
func NewUnit(name string, opts []unitfile.UnitOption, desired unitfile.DesiredState) (*Unit, error) {
	req, err := unitfile.Check(name, opts, desired)
	if err != nil {
		return nil, err
	}
	o := append([]unitfile.UnitOption(nil), opts...)
	return &Unit{Name: name, Options: o, Desired: desired, Hash: unitfile.Hash(o), req: req}, nil
}

// Contents returns the unit file text the agent writes.
func (u *Unit) Contents() []byte { return unitfile.Serialize(u.Options) }

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
