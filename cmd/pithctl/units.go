package main

// fleetctl's commands, against fleet's v1 API on pithd (or fleet itself).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/agent/schedule/fleetapi"
)

func init() { rootCmd.AddCommand(unitCommands()...) }

// DefaultFleetEndpoint is fleetctl's default.
const defaultFleetEndpoint = "unix:///var/run/fleet.sock"

type unitOpts struct {
	endpoint     string
	nodeRoot     string // status without units: the node's root
	timeout      time.Duration
	noBlock      bool
	blockTimeout time.Duration
	replace      bool
	full         bool
	noLegend     bool
	fields       map[*cobra.Command]*string
	lines        int
	follow       bool
	agentPort    int
}

func (o *unitOpts) client() (*fleetapi.Client, error) {
	ep := o.endpoint
	if ep == "" {
		ep = os.Getenv("FLEETCTL_ENDPOINT")
	}
	if ep == "" {
		ep = cmp.Or(socketEndpoint(), defaultFleetEndpoint)
	}
	// fleetctl accepts a comma-separated list; the first one is used.
	ep = strings.TrimSpace(strings.Split(ep, ",")[0])
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment}
	base, err := transport(ep, tr)
	if err != nil {
		return nil, err
	}
	return fleetapi.NewClientWith(base, &http.Client{Transport: tr}), nil
}

func (o *unitOpts) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	if o.timeout <= 0 {
		return context.WithCancel(cmd.Context())
	}
	return context.WithTimeout(cmd.Context(), o.timeout)
}

// unitCommands builds fresh command objects (tests build their own root).
func unitCommands() []*cobra.Command {
	o := &unitOpts{fields: map[*cobra.Command]*string{}}
	common := func(c *cobra.Command) *cobra.Command {
		c.Flags().StringVar(&o.endpoint, "endpoint", "", "fleet API endpoint, http://HOST:PORT or unix:///PATH (env FLEETCTL_ENDPOINT; default "+defaultFleetEndpoint+")")
		c.Flags().DurationVar(&o.timeout, "request-timeout", 0, "give up after this long (0: no limit)")
		addTLSFlags(c.Flags())
		return c
	}
	table := func(c *cobra.Command, fields string) *cobra.Command {
		c.Flags().BoolVarP(&o.full, "full", "l", false, "do not ellipsize machine IDs")
		c.Flags().BoolVar(&o.noLegend, "no-legend", false, "do not print a header line")
		o.fields[c] = c.Flags().String("fields", fields, "columns to print, comma-separated")
		return c
	}
	blocking := func(c *cobra.Command) *cobra.Command {
		c.Flags().BoolVar(&o.noBlock, "no-block", false, "return at once, without waiting for the units to reach the state")
		c.Flags().DurationVar(&o.blockTimeout, "block-timeout", 0, "stop waiting after this long and fail, saying why (0: wait until done; reasons are printed while waiting)")
		return c
	}
	submit := common(&cobra.Command{
		Use:   "submit UNIT_FILE...",
		Short: "Upload unit files to the cluster without scheduling them",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.transition(cmd, args, "")
		},
	})
	submit.Flags().BoolVar(&o.replace, "replace", false, "replace units whose contents differ")
	load := blocking(common(&cobra.Command{
		Use:   "load UNIT...",
		Short: "Schedule units to machines without starting them",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.transition(cmd, args, schedule.Loaded) },
	}))
	start := blocking(common(&cobra.Command{
		Use:   "start UNIT...",
		Short: "Schedule and start units; waits until they are launched or says why not",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.transition(cmd, args, schedule.Launched) },
	}))
	stop := blocking(common(&cobra.Command{
		Use:   "stop UNIT...",
		Short: "Stop units (they stay loaded on their machines)",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.setState(cmd, args, schedule.Loaded) },
	}))
	unload := blocking(common(&cobra.Command{
		Use:   "unload UNIT...",
		Short: "Stop units and take them off their machines (they stay known)",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.setState(cmd, args, schedule.Inactive) },
	}))
	destroy := common(&cobra.Command{
		Use:   "destroy UNIT...",
		Short: "Stop units and remove them from the cluster",
		Args:  cobra.MinimumNArgs(1),
		RunE:  o.destroy,
	})
	listUnits := table(common(&cobra.Command{
		Use:   "list-units",
		Short: "List units scheduled on machines, with their systemd state",
		Args:  cobra.NoArgs,
		RunE:  o.listUnits,
	}), "unit,machine,active,sub")
	listFiles := table(common(&cobra.Command{
		Use:   "list-unit-files",
		Short: "List the units known to the cluster",
		Args:  cobra.NoArgs,
		RunE:  o.listUnitFiles,
	}), "unit,hash,dstate,state,target")
	listMachines := table(common(&cobra.Command{
		Use:   "list-machines",
		Short: "List the live machines of the cluster",
		Args:  cobra.NoArgs,
		RunE:  o.listMachines,
	}), "machine,ip,metadata")
	cat := common(&cobra.Command{
		Use:   "cat UNIT",
		Short: "Print a unit file as the cluster holds it",
		Args:  cobra.ExactArgs(1),
		RunE:  o.cat,
	})
	inspect := func(c *cobra.Command) *cobra.Command {
		c.Flags().IntVar(&o.agentPort, "agent-port", 2379, "client port of pithd on the unit's machine")
		return common(c)
	}
	status := inspect(&cobra.Command{
		Use:   "status [UNIT...]",
		Short: "Show systemctl status of units, from the machines running them; without units, this node's status",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nodeStatus(cmd, o.nodeRoot)
			}
			for _, a := range args {
				if err := o.inspect(cmd, mangle(a), "status"); err != nil {
					return err
				}
			}
			return nil
		},
	})
	status.Flags().StringVar(&o.nodeRoot, "root", "/", "without units: root of the node's filesystem (for its user-data record)")
	journal := inspect(&cobra.Command{
		Use:   "journal UNIT",
		Short: "Print the journal of a unit, from the machine running it",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.inspect(cmd, mangle(args[0]), "journal") },
	})
	journal.Flags().IntVar(&o.lines, "lines", 10, "number of recent lines to print")
	journal.Flags().BoolVarP(&o.follow, "follow", "f", false, "keep printing new lines")
	return []*cobra.Command{submit, load, start, stop, unload, destroy, listUnits, listFiles, listMachines, cat, status, journal}
}

// mangle appends .service to names without a unit type, as fleetctl does.
func mangle(arg string) string {
	base := filepath.Base(arg)
	if !strings.Contains(base, ".") {
		return base + ".service"
	}
	return base
}

// localUnit finds the file for a unit argument: the path itself, the name
// in the current directory, or its template there.
func localUnit(arg string) (string, []byte, error) {
	name := mangle(arg)
	candidates := []string{arg, name}
	if tpl, ok := schedule.TemplateOf(name); ok {
		candidates = append(candidates, filepath.Join(filepath.Dir(arg), tpl))
	}
	for _, p := range candidates {
		b, err := os.ReadFile(p)
		if err == nil {
			return name, b, nil
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrInvalid) {
			var pe *os.PathError
			if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "is a directory") {
				continue
			}
			return name, nil, err
		}
	}
	return name, nil, nil
}

// ensure makes sure the unit exists in the cluster, creating it from a
// local file or template (local first, then the cluster's template).
func (o *unitOpts) ensure(ctx context.Context, c *fleetapi.Client, arg string, desired schedule.DesiredState, warn io.Writer) (string, bool, error) {
	name, body, err := localUnit(arg)
	if err != nil {
		return name, false, fmt.Errorf("%s: %v", arg, err)
	}
	if err := schedule.ValidateName(name); err != nil {
		return name, false, err
	}
	existing, err := c.Unit(ctx, name)
	if err != nil {
		return name, false, err
	}
	var opts []schedule.UnitOption
	if body != nil {
		if opts, err = schedule.ParseUnitFile(body); err != nil {
			return name, false, fmt.Errorf("%s: %v", arg, err)
		}
	}
	if existing != nil {
		if opts != nil && schedule.Hash(opts) != hashOf(existing) {
			switch {
			case o.replace:
				if _, err := schedule.NewUnit(name, opts, schedule.DesiredState(existing.DesiredState)); err != nil {
					return name, false, err
				}
				return name, false, c.CreateUnit(ctx, &fleetapi.Unit{Name: name, DesiredState: existing.DesiredState, Options: ptrs(opts)})
			case desired == "":
				return name, false, fmt.Errorf("unit %s already exists in the cluster with different contents: use submit --replace, or destroy it first", name)
			default:
				fmt.Fprintf(warn, "WARNING: unit %s in the cluster differs from local file %s; using the cluster's (submit --replace to update)\n", name, name)
			}
		}
		return name, false, nil
	}
	if opts == nil {
		tpl, ok := schedule.TemplateOf(name)
		if !ok {
			return name, false, fmt.Errorf("unit %s not found in the cluster, and no file %s here", name, name)
		}
		t, err := c.Unit(ctx, tpl)
		if err != nil {
			return name, false, err
		}
		if t == nil {
			return name, false, fmt.Errorf("unit %s not found: neither it nor its template %s exists here or in the cluster", name, tpl)
		}
		for _, op := range t.Options {
			opts = append(opts, *op)
		}
	}
	if desired == "" {
		desired = schedule.Inactive
	}
	// Validate locally for a clear message before any request.
	if _, err := schedule.NewUnit(name, opts, desired); err != nil {
		return name, false, err
	}
	return name, true, c.CreateUnit(ctx, &fleetapi.Unit{Name: name, DesiredState: string(desired), Options: ptrs(opts)})
}

// checkLocal validates every argument's name and local file before any
// request, so `submit good.service bad.service` stores nothing rather than
// half of what was asked.
func checkLocal(args []string, desired schedule.DesiredState) error {
	if desired == "" {
		desired = schedule.Inactive
	}
	for _, a := range args {
		name, body, err := localUnit(a)
		if err != nil {
			return fmt.Errorf("%s: %v", a, err)
		}
		if err := schedule.ValidateName(name); err != nil {
			return err
		}
		if body == nil {
			continue // the cluster's copy or template; checked by ensure
		}
		opts, err := schedule.ParseUnitFile(body)
		if err != nil {
			return fmt.Errorf("%s: %v", a, err)
		}
		if _, err := schedule.NewUnit(name, opts, desired); err != nil {
			return fmt.Errorf("%s: %v", a, err)
		}
	}
	return nil
}

func ptrs(opts []schedule.UnitOption) []*schedule.UnitOption {
	out := make([]*schedule.UnitOption, len(opts))
	for i := range opts {
		out[i] = &opts[i]
	}
	return out
}

func hashOf(u *fleetapi.Unit) string {
	opts := make([]schedule.UnitOption, len(u.Options))
	for i, op := range u.Options {
		opts[i] = *op
	}
	return schedule.Hash(opts)
}

// transition submits (if needed) and moves units to desired ("" = submit
// only), then waits unless --no-block.
func (o *unitOpts) transition(cmd *cobra.Command, args []string, desired schedule.DesiredState) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := o.ctx(cmd)
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

func (o *unitOpts) setState(cmd *cobra.Command, args []string, desired schedule.DesiredState) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := o.ctx(cmd)
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
func (o *unitOpts) wait(cmd *cobra.Command, ctx context.Context, c *fleetapi.Client, names []string, desired schedule.DesiredState) error {
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
				if desired != schedule.Inactive && u.MachineID == "" && u.Reason != "" && told[n] != u.Reason {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: waiting: not scheduled: %s\n", n, u.Reason)
					told[n] = u.Reason
				}
				continue
			}
			delete(pending, n)
			switch {
			case desired == schedule.Inactive:
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
func (o *unitOpts) whyNot(c *fleetapi.Client, pending map[string]bool, desired schedule.DesiredState, cause error) error {
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

func (o *unitOpts) machineIPs(ctx context.Context, c *fleetapi.Client) map[string]string {
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

func (o *unitOpts) destroy(cmd *cobra.Command, args []string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := o.ctx(cmd)
	defer cancel()
	for _, a := range args {
		name := mangle(a)
		if err := c.DestroyUnit(ctx, name); err != nil {
			if fleetapi.IsNotFound(err) {
				return fmt.Errorf("unit %s does not exist", name)
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Destroyed %s\n", name)
	}
	return nil
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

func unitDescription(u *fleetapi.Unit) string {
	for _, op := range u.Options {
		if op.Section == "Unit" && op.Name == "Description" {
			return op.Value
		}
	}
	return ""
}

func (o *unitOpts) listUnits(cmd *cobra.Command, _ []string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := o.ctx(cmd)
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
	byName := map[string]*fleetapi.Unit{}
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
		if seen[u.Name] || u.DesiredState == string(schedule.Inactive) || u.DesiredState == "" {
			continue
		}
		rows = append(rows, map[string]string{"unit": u.Name, "machine": machineLabel(u.MachineID, ips[u.MachineID], o.full), "desc": unitDescription(u)})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i]["unit"] < rows[j]["unit"] })
	return o.printTable(cmd, []string{"unit", "machine", "load", "active", "sub", "hash", "desc"}, rows)
}

func (o *unitOpts) listUnitFiles(cmd *cobra.Command, _ []string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := o.ctx(cmd)
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
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := o.ctx(cmd)
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
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := o.ctx(cmd)
	defer cancel()
	name := mangle(args[0])
	u, err := c.Unit(ctx, name)
	if err != nil {
		return err
	}
	if u == nil {
		return fmt.Errorf("unit %s does not exist", name)
	}
	opts := make([]schedule.UnitOption, len(u.Options))
	for i, op := range u.Options {
		opts[i] = *op
	}
	_, err = cmd.OutOrStdout().Write(schedule.Serialize(opts))
	return err
}

// inspect runs status/journal on the pithd of the unit's machine.
func (o *unitOpts) inspect(cmd *cobra.Command, name, what string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := o.ctx(cmd)
	defer cancel()
	u, err := c.Unit(ctx, name)
	if err != nil {
		return err
	}
	if u == nil {
		return fmt.Errorf("unit %s does not exist", name)
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
	return fleetapi.Inspect(ctx, http.DefaultClient, agent, name, what, o.lines, o.follow, cmd.OutOrStdout())
}
