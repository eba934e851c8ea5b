package e2e

import (
	"context"
	"crypto/sha512"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/agent/firstboot"
	"github.com/pith-os/pith/vm"
)

// badHashIgnition is an Ignition config with one data: file whose
// verification hash is another text's: it cannot be applied.
var badHashIgnition = `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/pith-e2e/bad",
  "contents":{"source":"data:,written","verification":{"hash":"` + fmt.Sprintf("sha512-%x", sha512.Sum512([]byte("other"))) + `"}}}]}}`

// badHashStop is the start of pithd firstboot's console line for it.
const badHashStop = firstboot.StopLinePrefix + "the Ignition config from qemu-fw-cfg was not applied (invalid: ignition config: storage.files.0.contents.verification.hash: contents have the wrong sha512 sum"

// checkIgnitionStops (issue 17, fail closed): a machine whose Ignition
// config cannot be applied stops its boot as Ignition does. pithd
// firstboot says why on the console, in one line saying nothing was
// written, and isolates emergency.target: systemd's emergency shell
// comes, no getty login prompt follows, and sshd never answers. The
// machine never needs SSH, so it is switched off right after.
func checkIgnitionStops(t *testing.T) {
	c := Boot(t, Options{UserData: writeUserData(t, "bad-hash.user-data", badHashIgnition)})
	defer c.PowerOff()
	n := c.Nodes[0]
	_, took := n.WaitConsole(badHashStop)
	t.Logf("MEASURE bad-hash Ignition: qemu-start->boot stopped=%s", took.Round(100*time.Millisecond))
	n.WaitConsole("You are in emergency mode")
	// What came after the isolate must not bring sshd up: one try, with
	// time enough for it to answer were it running.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := vm.RunSSH(ctx, n.M.Ports[22], vm.DefaultUser, c.VM.Key, "true"); err == nil {
		t.Errorf("SSH works on the machine whose boot stopped")
	}
	console := n.ConsoleText()
	i := strings.Index(console, badHashStop)
	if i < 0 {
		t.Fatalf("the console lost the stop line")
	}
	line, after := console[i:], console[i:]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	if !strings.Contains(line, "nothing of it was written and first boot is not recorded, so the next boot runs it again from scratch: fix the config and reboot") {
		t.Errorf("the stop line does not say nothing was written and what to do: %q", line)
	}
	if strings.Contains(after, LoginMarker) {
		t.Errorf("a login prompt (%q) on the console after the boot stopped:\n%s", LoginMarker, after)
	}
	t.Logf("console after the stop:\n%s", after)
}
