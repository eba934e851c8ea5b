package main

// `pithd firstboot` is the first-boot stage: find user-data, validate it,
// apply it, record what happened under /var/lib/pith. It runs as its own
// oneshot unit before pithd.service (which reads the ETCD_*/FLEET_* drop-in
// this stage writes) and before sshd (so SSH keys are in place); the image
// ships it as image/rootfs/overlay/usr/lib/systemd/system/pithd-firstboot.service.

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/spf13/cobra"

	"github.com/pith-os/pith/agent/datasource"
	"github.com/pith-os/pith/cloudconfig/apply"
)

func init() {
	var (
		ds       datasource.Config
		noUnits  bool
		drives   []string
		useSaved bool
	)
	cmd := &cobra.Command{
		Use:   "firstboot",
		Short: "Fetch, validate and apply user-data (the first-boot stage)",
		Long: `Apply the OEM partition's cloud-config (/usr/share/oem/cloud-config.yml),
then find user-data (QEMU fw_cfg, config drive, EC2, DigitalOcean, Vagrant,
a pith.config.url= on the kernel line, or --from-file), validate it, and
apply it: everything on first boot, then on later boots only what coreos-cloudinit
re-applied (hostname, write_files, /etc/hosts, units). Invalid user-data is
rejected as a whole and the report goes to the console and the journal; the
node boots on without it. On the vagrant platform, where user-data comes
after boot, pithd.service waits for it (pithctl userdata apply). Exit status
1 means user-data was not applied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("config-drive") {
				ds.ConfigDrives = drives
			}
			return runFirstBoot(cmd, ds, noUnits, useSaved)
		},
	}
	f := cmd.Flags()
	f.StringVar(&ds.Root, "root", "/", "root of the system to configure (tests and image builds)")
	f.StringVar(&ds.FromFile, "from-file", "", "use this user-data file instead of probing datasources")
	f.StringVar(&ds.MetadataURL, "metadata-url", datasource.DefaultMetadataURL, "base URL of the EC2/DigitalOcean metadata service")
	f.StringSliceVar(&drives, "config-drive", nil, "block devices or images to try as a config-2 drive (default: by-label config-2, /dev/sr0)")
	f.BoolVar(&noUnits, "no-units", false, "do not connect to systemd (units in user-data then fail the stage)")
	f.BoolVar(&useSaved, "saved", true, "on later boots without a datasource, re-apply the user-data saved by first boot")
	rootCmd.AddCommand(cmd)
}

// say prints to stdout (the console and the journal under the unit) and,
// when the journal is there, sends it with a priority so `journalctl -p err`
// finds rejections.
func say(cmd *cobra.Command, prio journal.Priority, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(cmd.OutOrStdout(), msg)
	if journal.Enabled() {
		journal.Send(msg, prio, map[string]string{"SYSLOG_IDENTIFIER": "pithd-firstboot"})
	}
}

// journalLevel maps the stage's levels to journal priorities.
var journalLevel = map[apply.Level]journal.Priority{
	apply.LevelInfo: journal.PriInfo, apply.LevelNotice: journal.PriNotice,
	apply.LevelWarning: journal.PriWarning, apply.LevelError: journal.PriErr,
}

func runFirstBoot(cmd *cobra.Command, ds datasource.Config, noUnits, useSaved bool) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ap := &apply.Applier{
		Root:     ds.Root,
		Accounts: &apply.Shadow{Root: ds.Root},
		Logf:     func(format string, args ...any) { say(cmd, journal.PriInfo, format, args...) },
	}
	if ds.Root == "/" {
		ap.Host = apply.KernelHost{}
	}
	if !noUnits {
		sd, err := apply.NewSystemd(ctx)
		if err != nil {
			say(cmd, journal.PriWarning, "pithd firstboot: %v; units in user-data cannot be applied", err)
		} else {
			defer sd.Close()
			ap.Units = sd
		}
	}
	_, err := apply.Boot(ctx, &apply.Stage{Applier: ap}, apply.BootOptions{
		Datasource: ds, UseSaved: useSaved,
		Say: func(l apply.Level, format string, args ...any) { say(cmd, journalLevel[l], format, args...) },
	})
	if err != nil {
		// Invalid user-data (apply.InvalidError) or a failed apply alike:
		// the unit fails, the node boots on.
		return fmt.Errorf("pithd firstboot: %w", err)
	}
	return nil
}
