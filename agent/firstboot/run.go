package firstboot

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/pith-os/pith/agent/datasource"
	"github.com/pith-os/pith/cloudconfig/apply"
)

// Config is what `pithd firstboot` is told.
type Config struct {
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

// Run runs the first-boot stage once on the system at
// cfg.Datasource.Root, with the host's shadow tools, hostname and systemd
// (agent/units). An error means user-data was not applied (invalid, or a
// failed apply): the unit fails, the node boots on; but an Ignition
// config that was not applied stops the boot (stopBoot), as Ignition does.
func Run(ctx context.Context, cfg Config) error {
	say := func(prio journal.Priority, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintln(cfg.Out, msg)
		// With a priority, so `journalctl -p err` finds rejections.
		if journal.Enabled() {
			journal.Send(msg, prio, map[string]string{"SYSLOG_IDENTIFIER": "pithd-firstboot"})
		}
	}
	ds := cfg.Datasource
	ap, closeUnits, err := newApplier(ctx, ds.Root, cfg.NoUnits)
	if err != nil {
		say(journal.PriWarning, "pithd firstboot: %v; units in user-data cannot be applied", err)
	}
	defer closeUnits()
	sayLevel := func(l Level, format string, args ...any) { say(journalPriority(l), format, args...) }
	ap.Log = sayLogger(sayLevel)
	res, err := Boot(ctx, &apply.Stage{Applier: ap}, BootOptions{Datasource: ds, UseSaved: cfg.UseSaved, Say: sayLevel})
	if res != nil && res.StopBoot {
		sd, _ := ap.Units.(BootStopper) // nil without systemd
		err = errors.Join(err, stopBoot(ctx, ds.Root, res.UserData, sd, sayLevel))
	}
	if err != nil {
		return fmt.Errorf("pithd firstboot: %w", err)
	}
	return nil
}

// journalPriority maps the stage's levels to journal priorities.
func journalPriority(l Level) journal.Priority {
	switch l {
	case LevelNotice:
		return journal.PriNotice
	case LevelWarning:
		return journal.PriWarning
	case LevelError:
		return journal.PriErr
	}
	return journal.PriInfo
}
