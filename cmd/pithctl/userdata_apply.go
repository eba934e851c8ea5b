package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

// euid is os.Geteuid; tests running as root set it to check the refusal
// of a non-root apply on "/".
var euid = os.Geteuid

// userdataApplyCmd is `pithctl userdata apply`: the first-boot stage, now,
// in full. It is the agent's work, so pithctl execs `pithd firstboot --now`
// with the same flags: pithd then has pithctl's process (its terminal,
// signals, stdin/stdout/stderr) and its exit status is the command's.
// Wired under `pithctl userdata` in validate.go.
func userdataApplyCmd() *cobra.Command {
	var root string
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
rejected or failed to apply; nothing of a rejected user-data is applied.

The node agent does the work: this runs pithd firstboot --now with the same
flags, the pithd installed next to pithctl (/usr/bin), else the one on PATH.`,
		Example: `  sudo pithctl userdata apply
  sudo pithctl userdata apply --from-file ./user-data`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if root == "/" && euid() != 0 {
				return errors.New("pithctl userdata apply changes the system: run it as root (sudo)")
			}
			bin, err := pithdPath()
			if err != nil {
				return err
			}
			argv := []string{bin, "firstboot", "--now"}
			for _, name := range []string{"root", "from-file", "metadata-url", "no-units", "no-restart"} {
				if f := cmd.Flags().Lookup(name); f.Changed {
					argv = append(argv, "--"+name+"="+f.Value.String())
				}
			}
			// Exec, not a child: no signal to forward, no exit status to
			// translate. It returns only on failure.
			return fmt.Errorf("exec %s: %w", bin, syscall.Exec(bin, argv, os.Environ()))
		},
	}
	f := cmd.Flags()
	f.StringVar(&root, "root", "/", "root of the node's filesystem (tests)")
	f.String("from-file", "", "apply this user-data file instead of probing datasources")
	f.String("metadata-url", "", "base URL of the EC2/DigitalOcean metadata service (default http://169.254.169.254)")
	f.Bool("no-units", false, "do not connect to systemd (tests; units in user-data then fail)")
	f.Bool("no-restart", false, "do not start or restart pithd.service afterwards")
	return cmd
}

// pithdPath is the pithd that userdata apply runs: the one installed next
// to pithctl's own executable (both are in /usr/bin on a node), else pithd
// on PATH.
func pithdPath() (string, error) {
	self, err := os.Executable()
	if err == nil {
		p := filepath.Join(filepath.Dir(self), "pithd")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	} else {
		self = "pithctl"
	}
	if p, err := exec.LookPath("pithd"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("pithctl userdata apply runs pithd firstboot --now on this node: pithd not found next to %s or on PATH", self)
}
