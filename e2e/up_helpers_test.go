package e2e

// Waiting for several booted nodes at once.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/vm"
)

// upTimes is when a node accepted SSH, and when its console showed the
// login prompt (0 if it never did), measured from its QEMU's start.
type upTimes struct{ login, ssh time.Duration }

// upAll waits for every node's SSH at once, so each node's figures are its
// own and not the sum of waits. SSH, not the console's login prompt, is
// what counts: under heavy load systemd may time out waiting for
// /dev/ttyS0 (90 s) and never start the serial getty.
func upAll(t *testing.T, nodes []*Node) []upTimes {
	t.Helper()
	res := make([]upTimes, len(nodes))
	errs := make(chan error, len(nodes))
	for i, n := range nodes {
		go func() {
			ctx, cancel := n.ctx()
			defer cancel()
			con := vm.Console{Path: n.M.SerialLog}
			for {
				if res[i].login == 0 {
					if b, _ := con.ReadFrom(0); strings.Contains(string(b), LoginMarker) {
						res[i].login = n.Since()
					}
				}
				r, err := vm.RunSSH(ctx, n.M.Ports[22], vm.DefaultUser, n.c.VM.Key, "true")
				if err == nil && r.ExitStatus == 0 {
					res[i].ssh = n.Since()
					errs <- nil
					return
				}
				select {
				case <-ctx.Done():
					errs <- fmt.Errorf("%s: SSH never worked: %v", n.Name, err)
					return
				case <-n.M.Done():
					errs <- fmt.Errorf("%s: QEMU exited: %v", n.Name, n.M.Err())
					return
				case <-time.After(2 * time.Second):
				}
			}
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		n.MarkConsole()
	}
	return res
}
