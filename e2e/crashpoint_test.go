package e2e

// Power cuts at a node's crash points (node/crashpoint), riding on the
// boots of TestFirstBoot and TestUpdate: a QEMU launch given
// crashpointFwCfg stops at that step; cutAt waits for the console to say so
// and kills QEMU (SIGKILL: what is not on the virtual disk is lost); Boot on
// the killed machine's disk (Options.Image) is the boot after the cut, and
// it runs through (the crash point was for that one launch).

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/cloudconfig/apply"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/node/crashpoint"
	"github.com/pith-os/pith/vm"
)

// crashpointFwCfg makes a QEMU launch stop at step name.
func crashpointFwCfg(t *testing.T, name string) map[string]string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "crashpoint-"+name)
	if err := os.WriteFile(p, []byte(name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]string{crashpoint.FwCfgName: p}
}

// cutAt waits until the node stopped at crash point name and the console
// showed every line of also (in any order, from the last wait on), then
// kills QEMU: a power cut at that step. It returns the time since QEMU
// started.
func (n *Node) cutAt(name string, also ...string) time.Duration {
	n.t.Helper()
	ctx, cancel := n.ctx()
	defer cancel()
	for _, m := range append([]string{crashpoint.Line(name)}, also...) {
		if _, _, err := (vm.Console{Path: n.M.SerialLog}).WaitFor(ctx, n.offset, n.M.Done(), nil, m); err != nil {
			n.t.Fatalf("%s: waiting for %q to cut the power: %v", n.Name, m, err)
		}
	}
	n.M.Kill()
	return time.Since(n.Started)
}

// cutScript is a #! user-data that counts its runs.
const cutScript = `#!/bin/sh
# Runs once: a first boot cut after its end must not run it again.
echo ran >> /var/lib/pith-e2e-script-runs
sync /var/lib/pith-e2e-script-runs
`

// scriptCutBoot boots a machine with cutScript as user-data, cuts the power
// once first boot applied it, the script ran to its end and the end was
// recorded, but before first boot was recorded as done (crash point
// firstboot-marker); it returns the machine booted again on that disk.
func scriptCutBoot(t *testing.T) *Cluster {
	t.Helper()
	ud := writeUserData(t, "script.user-data", cutScript)
	c := Boot(t, Options{UserData: ud, FwCfg: crashpointFwCfg(t, "firstboot-marker")})
	took := c.Nodes[0].cutAt("firstboot-marker", apply.ScriptDoneLine)
	t.Logf("script machine: power cut at firstboot-marker, script ended, %s after QEMU started", took.Round(time.Second))
	return Boot(t, Options{UserData: ud, Image: c.Nodes[0].M.Disk, KeyFrom: c.VM})
}

// checkScriptCut: on the boot after the cut, first boot ran again and was
// recorded as done, and the script, which had run to its end, did not run
// again.
func checkScriptCut(t *testing.T, n *Node) {
	n.WaitSSH()
	if got := n.Run("sudo cat /var/lib/pith-e2e-script-runs"); got != "ran" {
		t.Errorf("the script's runs: %q, want one run (\"ran\")", got)
	}
	sum := sha256.Sum256([]byte(cutScript))
	if got := n.Run("sudo cat " + apply.ScriptDonePath); got != hex.EncodeToString(sum[:]) {
		t.Errorf("%s = %q, want the script's SHA-256", apply.ScriptDonePath, got)
	}
	if r := n.Exec("test -f " + node.StateDir + "/" + node.FirstBootFile); r.ExitStatus != 0 {
		t.Errorf("first boot not recorded as done after the boot that followed the cut")
	}
	journal := n.Run("sudo journalctl -b --no-pager -o cat -t pithd-firstboot")
	if !strings.Contains(journal, "user-data script already ran to its end") {
		t.Errorf("pithd firstboot after the cut does not say the script already ran:\n%s", journal)
	}
	if c := n.ConsoleText(); strings.Contains(c, "pith: crashpoint") {
		t.Errorf("the boot after the cut stopped at a crash point too")
	}
	if st := n.Run("pithctl userdata"); !strings.Contains(st, "status:     applied") {
		t.Errorf("pithctl userdata after the cut:\n%s", st)
	}
}
