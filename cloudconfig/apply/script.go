package apply

// A #! user-data script: kept under node.StateDir and run by its own unit.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/node"
)

// ScriptPath is where a #! user-data script is kept and run from.
const ScriptPath = node.StateDir + "/user-data-script"

// ScriptDonePath holds the SHA-256 of the user-data script that ran to its
// end (exited, whatever its status; not killed by a cut or a shutdown).
const ScriptDonePath = ScriptPath + ".done"

// scriptDoneShell is the shell command that records, after the script's
// unit stopped, that the script with hash ran to its end: written beside,
// fsynced, renamed, directory fsynced (atomicfile's steps in sh). Then it
// says so on the console (ScriptDoneLine; a host cutting the power after
// it knows the record is on disk).
func scriptDoneShell(done, hash string) string {
	return fmt.Sprintf(`[ "${EXIT_CODE}" = exited ] || exit 0; echo %s > %s.tmp && sync %s.tmp && mv %s.tmp %s && sync %s && { (echo "<5>%s" > /dev/kmsg) 2>/dev/null || :; }`,
		hash, done, done, done, done, filepath.Dir(done), ScriptDoneLine)
}

// ScriptDoneLine is the console line once a script's end is on disk.
const ScriptDoneLine = "pith: user-data script ran to its end"

// scriptUnit runs the user-data script once, like coreos-cloudinit's
// transient unit: in the background, so a long script never holds up boot.
const scriptUnit = "pith-user-data-script.service"

// ApplyScript saves and starts a #! user-data script (first boot only).
// always=false starts it only when it differs from the saved one, so
// applying the same user-data again does not run it twice.
func (a *Applier) ApplyScript(ctx context.Context, script []byte, always bool) error {
	p, err := a.path(ScriptPath)
	if err != nil {
		return err
	}
	changed, err := a.write(p, script, 0o700, 0, 0)
	if err != nil {
		return err
	}
	if !changed && !always {
		a.log().Info("user-data script unchanged; not run again")
		return nil
	}
	sum := sha256.Sum256(script)
	hash := hex.EncodeToString(sum[:])
	if done, err := a.path(ScriptDonePath); err != nil {
		return err
	} else if b, _ := os.ReadFile(done); strings.TrimSpace(string(b)) == hash {
		// A first boot cut after the script ended, before it was
		// recorded as done: the script must not run twice.
		a.log().Info("user-data script already ran to its end; not run again", "done", ScriptDonePath)
		return nil
	}
	// The unit records the script's end itself (ExecStopPost), durably,
	// since that can come after first boot is recorded as done or after a
	// cut; "$$" is systemd's literal "$".
	unit := fmt.Sprintf("[Unit]\nDescription=User-data script from the datasource (first boot)\n\n[Service]\nType=simple\nExecStart=%s\nExecStopPost=/bin/sh -c '%s'\n",
		ScriptPath, strings.ReplaceAll(scriptDoneShell(ScriptDonePath, hash), "$", "$$"))
	up, err := a.path(filepath.Join(unitDir(true), scriptUnit))
	if err != nil {
		return err
	}
	if _, err := a.write(up, []byte(unit), 0o644, 0, 0); err != nil {
		return err
	}
	if a.Units == nil {
		return fmt.Errorf("script given but no systemd connection")
	}
	if err := a.Units.DaemonReload(ctx); err != nil {
		return err
	}
	a.changed("started %s", scriptUnit)
	return a.Units.Run(ctx, scriptUnit, "start")
}
