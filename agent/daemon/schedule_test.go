package daemon

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/agent/schedule/member"
	"github.com/pith-os/pith/agent/units/simunits"
	"github.com/pith-os/pith/agent/update"
	"github.com/pith-os/pith/internal/pithdtest"
	"github.com/pith-os/pith/unitfile"
)

// TestMachineUnits: the updater's health check reads, in-process, what the
// scheduler runs on this machine: a launched unit assigned here is
// reported once the agent started it, a unit placed elsewhere is not.
func TestMachineUnits(t *testing.T) {
	st := schedule.NewState()
	idx := uint64(0)
	apply := func(cmd *schedule.Command) {
		t.Helper()
		e, err := schedule.EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		idx++
		if err, ok := st.Apply(idx, e).(error); ok && err != nil {
			t.Fatal(err)
		}
	}
	opts, err := unitfile.ParseUnitFile([]byte("[Service]\nExecStart=/bin/true\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := schedule.Machine{ID: "m1", PublicIP: "127.0.0.1"}
	apply(&schedule.Command{Op: schedule.OpRegisterMachine, Machine: &m})
	for _, u := range []string{"here.service", "there.service"} {
		apply(&schedule.Command{Op: schedule.OpCreateUnit, Unit: &schedule.UnitSpec{Name: u, Options: opts, Desired: unitfile.Launched}})
	}
	apply(&schedule.Command{Op: schedule.OpPlace, Term: 1, Placements: []schedule.Placement{{Unit: "here.service", To: "m1"}, {Unit: "there.service", To: "m2"}}})

	sim, err := simunits.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := member.New(member.Config{
		Machine: m, State: st, Backend: sim,
		Propose:  func(context.Context, []byte) (any, error) { return nil, errors.New("read-only test") },
		IsLeader: func() bool { return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	var units update.ScheduledUnits = machineUnits{svc}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.RunAgent(ctx) }()
	defer func() { cancel(); <-done }()

	pithdtest.Poll(t, "here.service reported active", func() (bool, string) {
		us, err := units.MachineUnits(ctx)
		if err != nil {
			return false, err.Error()
		}
		// Read from the backend at the call, with how long it has run.
		if len(us) != 1 || us[0].ActiveFor <= 0 {
			return false, fmt.Sprint(us)
		}
		us[0].ActiveFor = 0
		want := []update.UnitState{{Name: "here.service", Desired: "launched", Active: "active", Sub: "running"}}
		return fmt.Sprint(us) == fmt.Sprint(want), fmt.Sprint(us)
	})
}
