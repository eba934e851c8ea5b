package schedule

// Commands: the replicated mutations, applied by every replica in log order.

import (
	"encoding/json"
	"fmt"

	"github.com/pith-os/pith/unitfile"
)

// Op names one kind of replicated mutation. Each Command is one raft log
// entry; State.Apply is the deterministic FSM step for it.
type Op string

const (
	// OpCreateUnit adds a unit (or replaces its options when they differ).
	OpCreateUnit Op = "create-unit"
	// OpSetDesired changes a unit's desired state.
	OpSetDesired Op = "set-desired"
	// OpDestroyUnit removes a unit.
	OpDestroyUnit Op = "destroy-unit"
	// OpRegisterMachine adds or updates a machine record (ID, IP, metadata).
	OpRegisterMachine Op = "register-machine"
	// OpRemoveMachine forgets a machine.
	OpRemoveMachine Op = "remove-machine"
	// OpPlace is the engine's batch of placement decisions.
	OpPlace Op = "place"
)

// Command is one replicated mutation. Only the fields its Op needs are set.
type Command struct {
	Op Op `json:"op"`
	// Unit: OpCreateUnit's name, options and desired state.
	Unit *UnitSpec `json:"unit,omitempty"`
	// Name and Desired: OpSetDesired, OpDestroyUnit, OpRemoveMachine (Name).
	Name    string                `json:"name,omitempty"`
	Desired unitfile.DesiredState `json:"desired,omitempty"`
	// Machine: OpRegisterMachine; Machines registers several at once (the
	// engine batches the records its heartbeats changed).
	Machine  *Machine   `json:"machine,omitempty"`
	Machines []*Machine `json:"machines,omitempty"`
	// Term fences OpPlace: batches from an engine whose leadership term is
	// older than one already applied are dropped whole.
	Term       uint64      `json:"term,omitempty"`
	Placements []Placement `json:"placements,omitempty"`
}

// UnitSpec is what an operator submits.
type UnitSpec struct {
	Name    string                `json:"name"`
	Options []unitfile.UnitOption `json:"options"`
	Desired unitfile.DesiredState `json:"desiredState"`
}

// Placement moves one unit From one machine To another ("" = unscheduled).
// It applies only if the unit is still on From, so stale decisions are no-ops.
type Placement struct {
	Unit   string `json:"unit"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// PlaceResult reports how many placements of a batch took effect.
type PlaceResult struct{ Applied, Skipped int }

// EncodeCommand is the log entry payload for cmd.
func EncodeCommand(cmd *Command) ([]byte, error) { return json.Marshal(cmd) }

// DecodeCommand parses a log entry payload.
func DecodeCommand(b []byte) (*Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("schedule: undecodable command: %v", err)
	}
	return &c, nil
}

// ApplyResult is what Apply returns for one log entry: the proposer's
// value (nil, or PlaceResult for OpPlace) and the command's error.
type ApplyResult struct {
	Value any
	Err   error
}
