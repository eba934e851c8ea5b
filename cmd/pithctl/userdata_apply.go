package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/agent/firstboot"
	"github.com/pith-os/pith/cloudconfig/apply"
)

// userdataApplyCmd is `pithctl userdata apply`: the first-boot stage, now,
// in full. Wired under `pithctl userdata` in validate.go.
func userdataApplyCmd() *cobra.Command {
	var (
		o         = firstboot.NowOptions{}
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
			if o.Root == "/" && os.Geteuid() != 0 {
				return errors.New("pithctl userdata apply changes the system: run it as root (sudo)")
			}
			now, err := firstboot.OpenNow(ctx, o)
			if err != nil {
				return err
			}
			defer now.Close()
			res, err := now.Apply(ctx, func(l firstboot.Level, format string, args ...any) {
				prefix := ""
				switch l {
				case firstboot.LevelWarning:
					prefix = "warning: "
				case firstboot.LevelError:
					prefix = "error: "
				}
				fmt.Fprintf(w, prefix+format+"\n", args...)
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
			if noRestart {
				return nil
			}
			how, err := now.StartAgent(ctx, res)
			if err != nil || how == "" {
				return err
			}
			if how == "restart" {
				fmt.Fprintf(w, "%s: restarted (its settings changed; a KV that already has data keeps its cluster membership)\n", apply.AgentUnit)
			} else {
				fmt.Fprintf(w, "%s: started if it was not running (its settings are unchanged)\n", apply.AgentUnit)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Root, "root", "/", "root of the node's filesystem (tests)")
	f.StringVar(&o.FromFile, "from-file", "", "apply this user-data file instead of probing datasources")
	f.StringVar(&o.MetadataURL, "metadata-url", "", "base URL of the EC2/DigitalOcean metadata service (default http://169.254.169.254)")
	f.BoolVar(&o.NoUnits, "no-units", false, "do not connect to systemd (tests; units in user-data then fail)")
	f.BoolVar(&noRestart, "no-restart", false, "do not start or restart pithd.service afterwards")
	return cmd
}
