package main

// Reading what the cluster runs: list-units, list-unit-files,
// list-machines, cat and status/journal on the unit's machine.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/fleetv1"
	"github.com/pith-os/pith/unitfile"
)

func (o *unitOpts) machineIPs(ctx context.Context, c *fleetv1.Client) map[string]string {
	ips := map[string]string{}
	ms, err := c.Machines(ctx)
	if err == nil {
		for _, m := range ms {
			ips[m.ID] = m.PrimaryIP
		}
	}
	return ips
}

// machineLabel is fleetctl's "ID.../IP" (full ID with -l).
func machineLabel(id, ip string, full bool) string {
	if id == "" {
		return "-"
	}
	if !full && len(id) > 8 {
		id = id[:8] + "..."
	}
	if ip == "" {
		return id
	}
	return id + "/" + ip
}

// printTable prints rows under the selected columns, fleetctl style.
func (o *unitOpts) printTable(cmd *cobra.Command, all []string, rows []map[string]string) error {
	var cols []string
	for _, f := range strings.Split(*o.fields[cmd], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		ok := false
		for _, a := range all {
			ok = ok || a == f
		}
		if !ok {
			return fmt.Errorf("unknown field %q: use %s", f, strings.Join(all, ","))
		}
		cols = append(cols, f)
	}
	if len(cols) == 0 {
		return fmt.Errorf("no fields: use --fields with some of %s", strings.Join(all, ","))
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 1, '\t', 0)
	if !o.noLegend {
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
	}
	for _, r := range rows {
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i] = r[c]
			if vals[i] == "" {
				vals[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	return tw.Flush()
}

func unitDescription(u *fleetv1.Unit) string {
	for _, op := range u.Options {
		if op.Section == "Unit" && op.Name == "Description" {
			return op.Value
		}
	}
	return ""
}

func (o *unitOpts) listUnits(cmd *cobra.Command, _ []string) error {
	c, ctx, cancel, err := o.session(cmd)
	if err != nil {
		return err
	}
	defer cancel()
	units, err := c.Units(ctx)
	if err != nil {
		return err
	}
	states, err := c.UnitStates(ctx, nil, nil)
	if err != nil {
		return err
	}
	ips := o.machineIPs(ctx, c)
	byName := map[string]*fleetv1.Unit{}
	for _, u := range units {
		byName[u.Name] = u
	}
	var rows []map[string]string
	seen := map[string]bool{}
	for _, s := range states {
		seen[s.Name] = true
		r := map[string]string{"unit": s.Name, "machine": machineLabel(s.MachineID, ips[s.MachineID], o.full),
			"load": s.SystemdLoadState, "active": s.SystemdActiveState, "sub": s.SystemdSubState, "hash": s.Hash}
		if !o.full && len(r["hash"]) > 7 {
			r["hash"] = r["hash"][:7]
		}
		if u := byName[s.Name]; u != nil {
			r["desc"] = unitDescription(u)
		}
		rows = append(rows, r)
	}
	// Units that should run but no machine reports yet.
	for _, u := range units {
		if seen[u.Name] || u.DesiredState == string(unitfile.Inactive) || u.DesiredState == "" {
			continue
		}
		rows = append(rows, map[string]string{"unit": u.Name, "machine": machineLabel(u.MachineID, ips[u.MachineID], o.full), "desc": unitDescription(u)})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i]["unit"] < rows[j]["unit"] })
	return o.printTable(cmd, []string{"unit", "machine", "load", "active", "sub", "hash", "desc"}, rows)
}

func (o *unitOpts) listUnitFiles(cmd *cobra.Command, _ []string) error {
	c, ctx, cancel, err := o.session(cmd)
	if err != nil {
		return err
	}
	defer cancel()
	units, err := c.Units(ctx)
	if err != nil {
		return err
	}
	ips := o.machineIPs(ctx, c)
	var rows []map[string]string
	for _, u := range units {
		h := hashOf(u)
		if !o.full {
			h = h[:7]
		}
		global := "false"
		target := machineLabel(u.MachineID, ips[u.MachineID], o.full)
		for _, op := range u.Options {
			if op.Section == "X-Fleet" && op.Name == "Global" {
				if b, err := strconv.ParseBool(op.Value); err == nil && b {
					global, target = "true", "global"
				}
			}
		}
		rows = append(rows, map[string]string{"unit": u.Name, "hash": h, "dstate": u.DesiredState, "state": u.CurrentState,
			"target": target, "desc": unitDescription(u), "global": global})
	}
	return o.printTable(cmd, []string{"unit", "hash", "dstate", "state", "target", "desc", "global"}, rows)
}

func (o *unitOpts) listMachines(cmd *cobra.Command, _ []string) error {
	c, ctx, cancel, err := o.session(cmd)
	if err != nil {
		return err
	}
	defer cancel()
	ms, err := c.Machines(ctx)
	if err != nil {
		return err
	}
	var rows []map[string]string
	for _, m := range ms {
		id := m.ID
		if !o.full && len(id) > 8 {
			id = id[:8] + "..."
		}
		var md []string
		for _, k := range mdKeys(m.Metadata) {
			md = append(md, k+"="+m.Metadata[k])
		}
		rows = append(rows, map[string]string{"machine": id, "ip": m.PrimaryIP, "metadata": strings.Join(md, ",")})
	}
	return o.printTable(cmd, []string{"machine", "ip", "metadata"}, rows)
}

func mdKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (o *unitOpts) cat(cmd *cobra.Command, args []string) error {
	c, ctx, cancel, err := o.session(cmd)
	if err != nil {
		return err
	}
	defer cancel()
	name := mangle(args[0])
	u, err := existingUnit(ctx, c, name)
	if err != nil {
		return err
	}
	opts := make([]unitfile.UnitOption, len(u.Options))
	for i, op := range u.Options {
		opts[i] = *op
	}
	_, err = cmd.OutOrStdout().Write(unitfile.Serialize(opts))
	return err
}

// inspect runs status/journal on the pithd of the unit's machine.
func (o *unitOpts) inspect(cmd *cobra.Command, name, what string) error {
	c, ctx, cancel, err := o.session(cmd)
	if err != nil {
		return err
	}
	defer cancel()
	u, err := existingUnit(ctx, c, name)
	if err != nil {
		return err
	}
	if u.MachineID == "" {
		if u.Reason != "" {
			return fmt.Errorf("unit %s is not on any machine: %s", name, u.Reason)
		}
		return fmt.Errorf("unit %s is not on a single machine (inactive or global): use list-units to find where it runs", name)
	}
	ip := o.machineIPs(ctx, c)[u.MachineID]
	if ip == "" {
		return fmt.Errorf("machine %s of unit %s is not live", u.MachineID, name)
	}
	agent := "http://" + net.JoinHostPort(ip, strconv.Itoa(o.agentPort))
	return fleetv1.Inspect(ctx, http.DefaultClient, agent, name, what, o.lines, o.follow, cmd.OutOrStdout())
}

// existingUnit reads unit name, an error if the cluster has none.
func existingUnit(ctx context.Context, c *fleetv1.Client, name string) (*fleetv1.Unit, error) {
	u, err := c.Unit(ctx, name)
	if err == nil && u == nil {
		err = fmt.Errorf("unit %s does not exist", name)
	}
	return u, err
}
