// Package fleetv1 is fleet's v1 HTTP API as both ends see it: its
// resources (units, unit states, machines, pages, errors) in fleet's JSON,
// its paths, and a client for it (pithctl units, and fleet's own API).
// agent/schedule/fleetapi serves it; Pith's per-machine unit inspection
// (UnitsPath) is here too. It imports nothing of Pith's but unitfile.
package fleetv1

import "github.com/pith-os/pith/unitfile"

// Prefix is where the API lives.
const Prefix = "/fleet/v1"

// UnitsPath is the per-machine unit inspection API:
//
//	GET /pith/v1/units/NAME/status                  systemctl status text
//	GET /pith/v1/units/NAME/journal?lines=N&follow=true   journal text, streamed
//
// Served by the pithd on the machine that runs the unit; pithctl finds the
// machine through /fleet/v1/units and /fleet/v1/machines.
const UnitsPath = "/pith/v1/units/"

// Unit is fleet's Unit resource.
type Unit struct {
	CurrentState string                 `json:"currentState,omitempty"`
	DesiredState string                 `json:"desiredState,omitempty"`
	MachineID    string                 `json:"machineID,omitempty"`
	Name         string                 `json:"name,omitempty"`
	Options      []*unitfile.UnitOption `json:"options,omitempty"`
	// Reason is Pith's addition (fleet clients ignore it): why a unit that
	// should run has no machine.
	Reason string `json:"reason,omitempty"`
}

// UnitPage is fleet's page of units.
type UnitPage struct {
	Units         []*Unit `json:"units,omitempty"`
	NextPageToken string  `json:"nextPageToken,omitempty"`
}

// UnitState is fleet's per-machine unit state.
type UnitState struct {
	Hash               string `json:"hash,omitempty"`
	MachineID          string `json:"machineID,omitempty"`
	Name               string `json:"name,omitempty"`
	SystemdActiveState string `json:"systemdActiveState,omitempty"`
	SystemdLoadState   string `json:"systemdLoadState,omitempty"`
	SystemdSubState    string `json:"systemdSubState,omitempty"`
}

// UnitStatePage is fleet's page of unit states.
type UnitStatePage struct {
	States        []*UnitState `json:"states,omitempty"`
	NextPageToken string       `json:"nextPageToken,omitempty"`
}

// Machine is fleet's Machine resource.
type Machine struct {
	ID        string            `json:"id,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	PrimaryIP string            `json:"primaryIP,omitempty"`
}

// MachinePage is fleet's page of machines.
type MachinePage struct {
	Machines      []*Machine `json:"machines,omitempty"`
	NextPageToken string     `json:"nextPageToken,omitempty"`
}

// ErrorBody is fleet's (Google API style) error response.
type ErrorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}
