package apply

// coreos.units: unit files (networkd's among them) written, enabled,
// masked and started through Units.

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/pith-os/pith/cloudconfig"
)

// unitDir is where unit files go: /etc/systemd/system, or
// /run/systemd/system for runtime units that must vanish at reboot.
// networkd's files (.network, .netdev, .link) go to /etc/systemd/network
// or /run/systemd/network, as coreos-cloudinit placed them.
func unitDir(runtime bool) string {
	if runtime {
		return "/run/systemd/system"
	}
	return "/etc/systemd/system"
}

func unitDirFor(u cloudconfig.Unit) string {
	if cloudconfig.IsNetworkUnit(u.Name) {
		if u.Runtime {
			return "/run/systemd/network"
		}
		return "/etc/systemd/network"
	}
	return unitDir(u.Runtime)
}

// NetworkdUnit is restarted when user-data changed networkd's files.
const NetworkdUnit = "systemd-networkd.service"

// applyUnits writes unit files and drop-ins, reloads systemd, enables and
// masks, then runs the commands, in that order (systemd must know a unit
// before it can enable or start it). Files already as written are left
// alone and systemd is reloaded only when a file changed (or reload is
// set), so applying the same units again only re-runs their commands.
// networkd's files take no command: networkd is restarted once, after
// all are written, when one changed.
func (a *Applier) applyUnits(ctx context.Context, units []cloudconfig.Unit, reload bool) error {
	if len(units) == 0 && !reload {
		return nil
	}
	network := false
	for _, u := range units {
		dir := unitDirFor(u)
		changed := false
		if u.Content != "" {
			p, err := a.path(filepath.Join(dir, u.Name))
			if err != nil {
				return err
			}
			c, err := a.write(p, []byte(u.Content), 0o644, 0, 0)
			if err != nil {
				return fmt.Errorf("unit %s: %w", u.Name, err)
			}
			changed = changed || c
		}
		for _, d := range u.DropIns {
			p, err := a.path(filepath.Join(dir, u.Name+".d", d.Name))
			if err != nil {
				return err
			}
			c, err := a.write(p, []byte(d.Content), 0o644, 0, 0)
			if err != nil {
				return fmt.Errorf("unit %s drop-in %s: %w", u.Name, d.Name, err)
			}
			changed = changed || c
		}
		if cloudconfig.IsNetworkUnit(u.Name) {
			network = network || changed
		} else {
			reload = reload || changed
		}
	}
	if a.Units == nil {
		return fmt.Errorf("units given but no systemd connection")
	}
	if reload {
		if err := a.Units.DaemonReload(ctx); err != nil {
			return fmt.Errorf("daemon-reload: %w", err)
		}
	}
	for _, u := range units {
		if cloudconfig.IsNetworkUnit(u.Name) {
			continue
		}
		switch {
		case u.Mask:
			if err := a.Units.Mask(ctx, []string{u.Name}, u.Runtime); err != nil {
				return fmt.Errorf("mask %s: %w", u.Name, err)
			}
		case u.Enable:
			if err := a.Units.Enable(ctx, []string{u.Name}, u.Runtime); err != nil {
				return fmt.Errorf("enable %s: %w", u.Name, err)
			}
		}
	}
	if network {
		if err := a.Units.Run(ctx, NetworkdUnit, "restart"); err != nil {
			return fmt.Errorf("restart %s: %w", NetworkdUnit, err)
		}
		a.log().Info("network files changed; restarted", "unit", NetworkdUnit)
		a.changed("restarted %s", NetworkdUnit)
	}
	for _, u := range units {
		if u.Command == "" || cloudconfig.IsNetworkUnit(u.Name) {
			continue
		}
		if err := a.Units.Run(ctx, u.Name, u.Command); err != nil {
			return fmt.Errorf("%s %s: %w", u.Command, u.Name, err)
		}
		a.log().Info("unit command run", "command", u.Command, "unit", u.Name)
	}
	return nil
}
