package units

// What the first-boot stage (cloudconfig/apply's Units) needs of systemd:
// reload, enable/disable/mask unit files and queue commands for user-data's
// coreos.units.

import (
	"context"
	"fmt"
)

// DaemonReload has systemd reload its unit files.
func (s *Systemd) DaemonReload(ctx context.Context) error { return s.conn.ReloadContext(ctx) }

// Enable links unit files into their targets; runtime puts the links under /run.
func (s *Systemd) Enable(ctx context.Context, names []string, runtime bool) error {
	_, _, err := s.conn.EnableUnitFilesContext(ctx, names, runtime, true)
	return err
}

// Disable removes what Enable linked.
func (s *Systemd) Disable(ctx context.Context, names []string, runtime bool) error {
	_, err := s.conn.DisableUnitFilesContext(ctx, names, runtime)
	return err
}

// Mask links unit files to /dev/null.
func (s *Systemd) Mask(ctx context.Context, names []string, runtime bool) error {
	_, err := s.conn.MaskUnitFilesContext(ctx, names, runtime, true)
	return err
}

// Run queues command (start, stop, restart, reload, try-restart,
// reload-or-restart, reload-or-try-restart) for unit name and does not
// wait for it, like `systemctl --no-block`: the first-boot stage runs
// before network-online.target and sshd, and a user unit ordered After=
// either would otherwise deadlock waiting for the stage that starts it.
// Failures of the units themselves show in the journal and `systemctl
// status`; failures to queue are returned.
func (s *Systemd) Run(ctx context.Context, name, command string) error {
	var err error
	switch command {
	case "start":
		_, err = s.conn.StartUnitContext(ctx, name, "replace", nil)
	case "stop":
		_, err = s.conn.StopUnitContext(ctx, name, "replace", nil)
	case "restart":
		_, err = s.conn.RestartUnitContext(ctx, name, "replace", nil)
	case "reload":
		_, err = s.conn.ReloadUnitContext(ctx, name, "replace", nil)
	case "try-restart":
		_, err = s.conn.TryRestartUnitContext(ctx, name, "replace", nil)
	case "reload-or-restart":
		_, err = s.conn.ReloadOrRestartUnitContext(ctx, name, "replace", nil)
	case "reload-or-try-restart":
		_, err = s.conn.ReloadOrTryRestartUnitContext(ctx, name, "replace", nil)
	default:
		return fmt.Errorf("unknown unit command %q", command)
	}
	return err
}

// Isolate queues an isolate of target (emergency.target when the
// first-boot stage stops the boot) and returns once systemd took the job,
// without waiting for it: the caller's own unit is among those it stops.
// Isolating replaces the queued start jobs of every unit target does not
// need.
func (s *Systemd) Isolate(ctx context.Context, target string) error {
	_, err := s.conn.StartUnitContext(ctx, target, "isolate", nil)
	return err
}
