package daemon

// The first-boot stage (`pithd firstboot`): find user-data, validate it,
// apply it, record what happened under node.StateDir. It runs as its own
// oneshot unit before pithd.service (which reads the ETCD_*/FLEET_*
// drop-in this stage writes) and before sshd (so SSH keys are in place);
// the image ships it as
// image/rootfs/overlay/usr/lib/systemd/system/pithd-firstboot.service.

import (
	"context"
	"fmt"
	"io"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/pith-os/pith/agent/datasource"
	"github.com/pith-os/pith/cloudconfig/apply"
)

// FirstBootConfig is what `pithd firstboot` is told.
type FirstBootConfig struct {
	// Datasource says where to look for user-data; its Root is the
	// system to configure ("/" on a node).
	Datasource datasource.Config
	// NoUnits: do not connect to systemd (units in user-data then fail).
	NoUnits bool
	// UseSaved re-applies the user-data first boot saved when no
	// datasource answers on a later boot.
	UseSaved bool
	// Out gets every message (the console and, under the unit, the
	// journal); messages also go to the journal with a priority when it
	// is there.
	Out io.Writer
}

// FirstBoot runs the first-boot stage once. An error means user-data was
// not applied (invalid, or a failed apply): the unit fails, the node
// boots on.
func FirstBoot(ctx context.Context, cfg FirstBootConfig) error {
	say := func(prio journal.Priority, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintln(cfg.Out, msg)
		// With a priority, so `journalctl -p err` finds rejections.
		if journal.Enabled() {
			journal.Send(msg, prio, map[string]string{"SYSLOG_IDENTIFIER": "pithd-firstboot"})
		}
	}
	ds := cfg.Datasource
	ap := &apply.Applier{
		Root:     ds.Root,
		Accounts: &apply.Shadow{Root: ds.Root},
		Logf:     func(format string, args ...any) { say(journal.PriInfo, format, args...) },
	}
	if ds.Root == "/" {
		ap.Host = apply.KernelHost{}
	}
	if !cfg.NoUnits {
		sd, err := apply.NewSystemd(ctx)
		if err != nil {
			say(journal.PriWarning, "pithd firstboot: %v; units in user-data cannot be applied", err)
		} else {
			defer sd.Close()
			ap.Units = sd
		}
	}
	_, err := apply.Boot(ctx, &apply.Stage{Applier: ap}, apply.BootOptions{
		Datasource: ds, UseSaved: cfg.UseSaved,
		Say: func(l apply.Level, format string, args ...any) { say(journalPriority(l), format, args...) },
	})
	if err != nil {
		return fmt.Errorf("pithd firstboot: %w", err)
	}
	return nil
}

// journalPriority maps the stage's levels to journal priorities.
func journalPriority(l apply.Level) journal.Priority {
	switch l {
	case apply.LevelNotice:
		return journal.PriNotice
	case apply.LevelWarning:
		return journal.PriWarning
	case apply.LevelError:
		return journal.PriErr
	}
	return journal.PriInfo
}
