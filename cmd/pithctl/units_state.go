package main

// Changing what the cluster runs: load, start, stop, unload and destroy,
// and waiting until the machines reached it.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/fleetv1"
	"github.com/pith-os/pith/unitfile"
)

// transition submits (if needed) and moves units to desired ("" = submit
// only), then waits unless --no-block.
func (o *unitOpts) transition(cmd *cobra.Command, args []string, desired unitfile.DesiredState) error {
	c, ctx, cancel, err := o.session(cmd)
	if err != nil {
		return err
	}
	defer cancel()
	if err := checkLocal(args, desired); err != nil {
		return err
	}
	var names []string
	for _, a := range args {
		name, created, err := o.ensure(ctx, c, a, desired, cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		if created && desired == "" {
			fmt.Fprintf(cmd.OutOrStdout(), "Unit %s\n", name)
		}
		if desired != "" && !created {
			if err := c.SetUnitTargetState(ctx, name, string(desired)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		names = append(names, name)
	}
	if desired == "" {
		return nil
	}
	return o.wait(cmd, ctx, c, names, desired)
}

func (o *unitOpts) setState(cmd *cobra.Command, args []string, desired unitfile.DesiredState) error {
	c, ctx, cancel, err := o.session(cmd)
	if err != nil {
		return err
	}
	defer cancel()
	var names []string
	for _, a := range args {
		name := mangle(a)
		u, err := c.Unit(ctx, name)
		if err != nil {
			return err
		}
		if u == nil {
			return fmt.Errorf("unit %s does not exist", name)
		}
		if err := c.SetUnitTargetState(ctx, name, string(desired)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		names = append(names, name)
	}
	return o.wait(cmd, ctx, c, names, desired)
}

// wait polls until every unit's currentState reaches desired. With
// --block-timeout it gives up and explains what it sees.
func (o *unitOpts) wait(cmd *cobra.Command, ctx context.Context, c *fleetv1.Client, names []string, desired unitfile.DesiredState) error {
	if o.noBlock {
		return nil
	}
	var deadline <-chan time.Time
	if o.blockTimeout > 0 {
		t := time.NewTimer(o.blockTimeout)
		defer t.Stop()
		deadline = t.C
	}
	pending := map[string]bool{}
	for _, n := range names {
		pending[n] = true
	}
	var ips map[string]string
	told := map[string]string{} // last reason shown per unit
	for {
		for _, n := range names {
			if !pending[n] {
				continue
			}
			u, err := c.Unit(ctx, n)
			if err != nil {
				return err
			}
			if u == nil {
				return fmt.Errorf("unit %s disappeared (destroyed by someone else?)", n)
			}
			if u.CurrentState != string(desired) {
				// Say at once why a unit is not placed, and keep waiting:
				// the cluster may change (a machine joins, a conflict stops).
				if desired != unitfile.Inactive && u.MachineID == "" && u.Reason != "" && told[n] != u.Reason {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: waiting: not scheduled: %s\n", n, u.Reason)
					told[n] = u.Reason
				}
				continue
			}
			delete(pending, n)
			switch {
			case desired == unitfile.Inactive:
				fmt.Fprintf(cmd.OutOrStdout(), "Unit %s inactive\n", n)
			case u.MachineID == "":
				fmt.Fprintf(cmd.OutOrStdout(), "Unit %s %s on all eligible machines\n", n, desired)
			default:
				if ips == nil {
					ips = o.machineIPs(ctx, c)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Unit %s %s on %s\n", n, desired, machineLabel(u.MachineID, ips[u.MachineID], o.full))
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return o.whyNot(c, pending, desired, ctx.Err())
		case <-deadline:
			return o.whyNot(c, pending, desired, errors.New("gave up waiting"))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// whyNot explains, per unit, why it has not reached desired.
func (o *unitOpts) whyNot(c *fleetv1.Client, pending map[string]bool, desired unitfile.DesiredState, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var msgs []string
	for _, n := range unitNamesSorted(pending) {
		u, err := c.Unit(ctx, n)
		switch {
		case err != nil:
			msgs = append(msgs, fmt.Sprintf("%s: %v", n, err))
		case u == nil:
			msgs = append(msgs, n+": destroyed")
		case u.MachineID == "" && u.Reason != "":
			msgs = append(msgs, fmt.Sprintf("%s: not scheduled: %s", n, u.Reason))
		case u.MachineID == "":
			msgs = append(msgs, n+": not scheduled yet (is a leader running?)")
		default:
			why := fmt.Sprintf("%s: on %s, currently %s", n, u.MachineID, u.CurrentState)
			if st, err := c.UnitStates(ctx, []string{n}, []string{u.MachineID}); err == nil && len(st) == 1 {
				why += fmt.Sprintf(" (systemd: %s/%s)", st[0].SystemdActiveState, st[0].SystemdSubState)
			} else if err == nil {
				why += " (its machine has not reported it)"
			}
			msgs = append(msgs, why)
		}
	}
	return fmt.Errorf("%v before units reached %s:\n  %s", cause, desired, strings.Join(msgs, "\n  "))
}

func unitNamesSorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (o *unitOpts) destroy(cmd *cobra.Command, args []string) error {
	c, ctx, cancel, err := o.session(cmd)
	if err != nil {
		return err
	}
	defer cancel()
	for _, a := range args {
		name := mangle(a)
		if err := c.DestroyUnit(ctx, name); err != nil {
			if fleetv1.IsNotFound(err) {
				return fmt.Errorf("unit %s does not exist", name)
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Destroyed %s\n", name)
	}
	return nil
}
