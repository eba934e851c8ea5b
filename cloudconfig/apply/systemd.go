package apply

import (
	"context"
	"fmt"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"golang.org/x/sys/unix"
)

// Systemd implements Units over systemd's D-Bus API (go-systemd).
//
// Commands are queued, not waited for (like `systemctl --no-block`): the
// first-boot stage runs before network-online.target and sshd, and a
// user unit ordered After= either would otherwise deadlock waiting for the
// stage that starts it. Failures of the units themselves show in the
// journal and `systemctl status`; failures to queue are returned.
type Systemd struct{ conn *sd.Conn }

// NewSystemd connects to systemd on the system bus.
func NewSystemd(ctx context.Context) (*Systemd, error) {
	c, err := sd.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot reach systemd over D-Bus (is this a systemd host?): %w", err)
	}
	return &Systemd{conn: c}, nil
}

// Close drops the D-Bus connection.
func (s *Systemd) Close() { s.conn.Close() }

// DaemonReload implements Units.
func (s *Systemd) DaemonReload(ctx context.Context) error { return s.conn.ReloadContext(ctx) }

// Enable implements Units.
func (s *Systemd) Enable(ctx context.Context, names []string, runtime bool) error {
	_, _, err := s.conn.EnableUnitFilesContext(ctx, names, runtime, true)
	return err
}

// Disable implements Units.
func (s *Systemd) Disable(ctx context.Context, names []string, runtime bool) error {
	_, err := s.conn.DisableUnitFilesContext(ctx, names, runtime)
	return err
}

// Mask implements Units.
func (s *Systemd) Mask(ctx context.Context, names []string, runtime bool) error {
	_, err := s.conn.MaskUnitFilesContext(ctx, names, runtime, true)
	return err
}

// Run implements Units.
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

// KernelHost sets the hostname with sethostname(2). systemd-hostnamed
// reads /etc/hostname, which the applier writes first.
type KernelHost struct{}

// SetHostname implements Host.
func (KernelHost) SetHostname(name string) error { return unix.Sethostname([]byte(name)) }
