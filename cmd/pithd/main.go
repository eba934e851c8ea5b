// Command pithd is the Pith node agent. `pithd run` parses its flags and
// the environment into an agent/daemon Config and runs the daemon that
// package assembles (cluster, KV, scheduler, updater); `pithd firstboot`
// runs the first-boot stage (agent/firstboot), and `pithd firstboot --now`
// runs it again for an operator (pithctl userdata apply execs it). Nothing
// else lives here.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/agent/daemon"
	"github.com/pith-os/pith/agent/datasource"
	"github.com/pith-os/pith/agent/firstboot"
	"github.com/pith-os/pith/version"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pithd:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "pithd",
		Short:         "The Pith node agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print pithd's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "pithd", version.Version)
		},
	}, newRunCmd(), newFirstBootCmd())
	return root
}

func newRunCmd() *cobra.Command {
	var cfg daemon.Config
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the node agent: the KV store and every other subsystem",
		Long: `Run the node agent. The KV store takes etcd's flags and ETCD_* environment
variables (ETCD_NAME, ETCD_INITIAL_CLUSTER, ...), the scheduler fleet's
FLEET_* ones, so cloud-config's coreos.etcd2 and coreos.fleet sections map
onto it one to one. A flag given on the command line wins over its
environment variable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Load(cmd.Flags()); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			d, err := daemon.New(ctx, cfg)
			if err != nil {
				return err
			}
			return d.Run(ctx)
		},
	}
	cfg.AddFlags(cmd.Flags())
	return cmd
}

// euid is os.Geteuid; tests running as root set it to check the refusal
// of a non-root --now on "/".
var euid = os.Geteuid

func newFirstBootCmd() *cobra.Command {
	var (
		cfg            firstboot.Config
		drives         []string
		now, noRestart bool
	)
	cmd := &cobra.Command{
		Use:   "firstboot",
		Short: "Fetch, validate and apply user-data (the first-boot stage)",
		Long: `Apply the OEM partition's cloud-config (/usr/share/oem/cloud-config.yml),
then find user-data (an ignition.config.url= or pith.config.url= on the kernel
line, QEMU fw_cfg, config drive, EC2, DigitalOcean, Vagrant, or --from-file),
validate it, and apply it: everything on first boot, then on later boots only what coreos-cloudinit
re-applied (hostname, write_files, /etc/hosts, units). Invalid user-data is
rejected as a whole and the report goes to the console and the journal; the
node boots on without it. An Ignition config that cannot be applied (invalid,
a source not fetched, a wrong hash, an apply error, an ignition.config.url that
cannot be fetched) stops the boot instead, as Ignition does: one console line says why, and systemd isolates
emergency.target, so sshd and pithd never start (not with --now: an
operator's run never stops a running node). On the vagrant platform, where user-data comes
after boot, pithd.service waits for it (pithctl userdata apply). Exit status
1 means user-data was not applied.

With --now (what pithctl userdata apply runs, as root on a node) the stage
runs for an operator: the user-data is applied in full, as on first boot,
whatever boot this is; every change made is listed ("changed: nothing" the
second time), and pithd.service is then restarted when its settings changed,
else started if it was not running (not with --no-restart).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if f.Changed("config-drive") {
				cfg.Datasource.ConfigDrives = drives
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			switch {
			case !now && noRestart:
				return errors.New("--no-restart goes with --now (a boot's run never touches pithd.service)")
			case now && f.Changed("saved"):
				return errors.New("--saved is for a boot's run: --now applies the user-data found now, in full")
			case !now:
				cfg.Out = cmd.OutOrStdout()
				return firstboot.Run(ctx, cfg)
			}
			ds := cfg.Datasource
			if ds.Root == "/" && euid() != 0 {
				return errors.New("pithd firstboot --now changes the system: run it as root (sudo)")
			}
			return firstboot.RunNow(ctx, firstboot.NowOptions{
				Root: ds.Root, FromFile: ds.FromFile, MetadataURL: ds.MetadataURL, ConfigDrives: ds.ConfigDrives,
				NoUnits: cfg.NoUnits, NoRestart: noRestart,
			}, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	ds := &cfg.Datasource
	f.StringVar(&ds.Root, "root", "/", "root of the system to configure (tests and image builds)")
	f.StringVar(&ds.FromFile, "from-file", "", "use this user-data file instead of probing datasources")
	f.StringVar(&ds.MetadataURL, "metadata-url", datasource.DefaultMetadataURL, "base URL of the EC2/DigitalOcean metadata service")
	f.StringSliceVar(&drives, "config-drive", nil, "block devices or images to try as a config-2 drive (default: by-label config-2, /dev/sr0)")
	f.BoolVar(&cfg.NoUnits, "no-units", false, "do not connect to systemd (units in user-data then fail the stage)")
	f.BoolVar(&cfg.UseSaved, "saved", true, "on later boots without a datasource, re-apply the user-data saved by first boot (not with --now)")
	f.BoolVar(&now, "now", false, "apply the user-data now, in full, list what changed and start or restart pithd.service (pithctl userdata apply)")
	f.BoolVar(&noRestart, "no-restart", false, "with --now: do not start or restart pithd.service afterwards")
	return cmd
}
