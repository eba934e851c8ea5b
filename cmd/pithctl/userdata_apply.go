package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pith-os/pith/agent/firstboot"
	"github.com/pith-os/pith/agent/units"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/agent/datasource"
	"github.com/pith-os/pith/cloudconfig/apply"
)

// userdataApplyCmd is `pithctl userdata apply`: the first-boot stage, now,
// in full. Wired under `pithctl userdata` in validate.go.
func userdataApplyCmd() *cobra.Command {
	var (
		ds        datasource.Config
		noUnits   bool
		noRestart bool
	)
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Fetch and apply user-data now, and say what changed",
		Long: `Run the first-boot stage now: the OEM partition's cloud-config, then the
user-data of the first datasource present (or --from-file), validated and
applied in full, as on first boot: users, SSH keys, files, units. Applying
the same user-data again changes nothing (files already as written are left
alone; a #! script runs again only if it changed) and the command lists
every change it made. When pithd's settings (coreos.etcd2, coreos.fleet,
pith:) changed, pithd.service is restarted; a pithd that waited for user-data
(the vagrant platform) is started. Exit status 1 when the user-data was
rejected or failed to apply; nothing of a rejected user-data is applied.`,
		Example: `  sudo pithctl userdata apply
  sudo pithctl userdata apply --from-file ./user-data`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			w := cmd.OutOrStdout()
			if ds.Root == "/" && os.Geteuid() != 0 {
				return errors.New("pithctl userdata apply changes the system: run it as root (sudo)")
			}
			ap := &apply.Applier{Root: ds.Root, Accounts: &apply.Shadow{Root: ds.Root}}
			if ds.Root == "/" {
				ap.Host = apply.KernelHost{}
			}
			if !noUnits {
				sd, err := units.NewSystemd(ctx, "")
				if err != nil {
					return err
				}
				defer sd.Close()
				ap.Units = sd
			}
			res, err := firstboot.Boot(ctx, &apply.Stage{Applier: ap}, firstboot.BootOptions{
				Datasource: ds, Now: true,
				Say: func(l firstboot.Level, format string, args ...any) {
					prefix := ""
					switch l {
					case firstboot.LevelWarning:
						prefix = "warning: "
					case firstboot.LevelError:
						prefix = "error: "
					}
					fmt.Fprintf(w, prefix+format+"\n", args...)
				},
			})
			if res != nil {
				if len(res.Changes) == 0 {
					fmt.Fprintln(w, "changed: nothing (the node already is as the user-data says)")
				} else {
					fmt.Fprintf(w, "changed (%d):\n", len(res.Changes))
					for _, c := range res.Changes {
						fmt.Fprintf(w, "  %s\n", c)
					}
				}
			}
			if err != nil {
				return errors.New("user-data was not applied (see above; pithctl userdata shows the report)")
			}
			if res.Waiting != "" || noUnits || noRestart {
				return nil
			}
			how := "start"
			if res.AgentChanged {
				how = "restart"
			}
			if err := ap.Units.Run(ctx, apply.AgentUnit, how); err != nil {
				return fmt.Errorf("%s %s: %w", how, apply.AgentUnit, err)
			}
			if res.AgentChanged {
				fmt.Fprintf(w, "%s: restarted (its settings changed; a KV that already has data keeps its cluster membership)\n", apply.AgentUnit)
			} else {
				fmt.Fprintf(w, "%s: started if it was not running (its settings are unchanged)\n", apply.AgentUnit)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&ds.Root, "root", "/", "root of the node's filesystem (tests)")
	f.StringVar(&ds.FromFile, "from-file", "", "apply this user-data file instead of probing datasources")
	f.StringVar(&ds.MetadataURL, "metadata-url", datasource.DefaultMetadataURL, "base URL of the EC2/DigitalOcean metadata service")
	f.BoolVar(&noUnits, "no-units", false, "do not connect to systemd (tests; units in user-data then fail)")
	f.BoolVar(&noRestart, "no-restart", false, "do not start or restart pithd.service afterwards")
	return cmd
}
