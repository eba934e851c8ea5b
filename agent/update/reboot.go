package update

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// CommandRebooter reboots by running a command: `systemctl reboot` on a
// node, or a hook in simulated clusters (PITH_UPDATE_REASON is set in its
// environment).
type CommandRebooter struct {
	Argv []string
}

// SystemdRebooter asks systemd for a clean reboot.
func SystemdRebooter() *CommandRebooter {
	return &CommandRebooter{Argv: []string{"systemctl", "reboot", "--message=pith update"}}
}

// Reboot runs the command.
func (c *CommandRebooter) Reboot(ctx context.Context, reason string) error {
	if len(c.Argv) == 0 {
		return fmt.Errorf("reboot: no command configured")
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Env = append(cmd.Environ(), "PITH_UPDATE_REASON="+reason)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("reboot (%s): %v: %s", strings.Join(c.Argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
