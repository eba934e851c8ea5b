package main

// fleetctl's commands, against fleet's v1 API on pithd (or fleet itself).

import (
	"cmp"
	"context"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/fleetv1"
	"github.com/pith-os/pith/unitfile"
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

func (o *unitOpts) client() (*fleetv1.Client, error) {
	ep := o.endpoint
	if ep == "" {
		ep = os.Getenv("FLEETCTL_ENDPOINT")
	}
	if ep == "" {
		ep = cmp.Or(socketEndpoint(), defaultFleetEndpoint)
	}
	// fleetctl accepts a comma-separated list; the first one is used.
	ep = strings.TrimSpace(strings.Split(ep, ",")[0])
	base, rt, err := transport(ep, &http.Transport{Proxy: http.ProxyFromEnvironment})
	if err != nil {
		return nil, err
	}
	return fleetv1.NewClientWith(base, &http.Client{Transport: rt}), nil
}

// session is what every unit command starts with: the fleet API client and
// the command's context (bounded by --request-timeout when set); defer
// cancel.
func (o *unitOpts) session(cmd *cobra.Command) (*fleetv1.Client, context.Context, context.CancelFunc, error) {
	c, err := o.client()
	if err != nil {
		return nil, nil, nil, err
	}
	if o.timeout > 0 {
		ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
		return c, ctx, cancel, nil
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	return c, ctx, cancel, nil
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
		RunE:  func(cmd *cobra.Command, args []string) error { return o.transition(cmd, args, unitfile.Loaded) },
	}))
	start := blocking(common(&cobra.Command{
		Use:   "start UNIT...",
		Short: "Schedule and start units; waits until they are launched or says why not",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.transition(cmd, args, unitfile.Launched) },
	}))
	stop := blocking(common(&cobra.Command{
		Use:   "stop UNIT...",
		Short: "Stop units (they stay loaded on their machines)",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.setState(cmd, args, unitfile.Loaded) },
	}))
	unload := blocking(common(&cobra.Command{
		Use:   "unload UNIT...",
		Short: "Stop units and take them off their machines (they stay known)",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.setState(cmd, args, unitfile.Inactive) },
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
