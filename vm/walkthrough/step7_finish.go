package walkthrough

// Step 7: use it: how to reach the cluster left running.

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/vm"
)

// Finish prints how to use the cluster that is left running.
func (d *Demo) Finish(stopCmd string) string {
	var b strings.Builder
	st := d.cfg.StateDir
	fmt.Fprintf(&b, "Log in to a node:\n")
	for i, m := range d.Cluster.Machines {
		fmt.Fprintf(&b, "  pith boot ssh --state %s %s      (ssh -i %s -p %d core@127.0.0.1)\n", st, d.NodeName(i), filepath.Join(d.Cluster.Dir, vm.KeyFile), m.Ports[22])
	}
	ep := d.apiURL(0)
	fmt.Fprintf(&b, "The KV (etcd v2 API) from this workstation:\n")
	fmt.Fprintf(&b, "  curl %s/v2/keys/message\n", ep)
	fmt.Fprintf(&b, "  %s --endpoints %s kv ls --recursive /\n", filepath.Join(d.cfg.BinDir, "pithctl"), ep)
	fmt.Fprintf(&b, "The scheduler (fleet's v1 API on the same port):\n")
	fmt.Fprintf(&b, "  %s --endpoint %s list-units\n", filepath.Join(d.cfg.BinDir, "pithctl"), ep)
	fmt.Fprintf(&b, "  curl %s/fleet/v1/units\n", ep)
	fmt.Fprintf(&b, "Node consoles: %s/node*/serial.log; machines: pith boot status --state %s\n", st, st)
	fmt.Fprintf(&b, "Stop everything (nodes, discovery and channel servers):\n  %s\n", stopCmd)
	d.heading(7, "Use it")
	fmt.Fprint(d.cfg.Out, b.String())
	return b.String()
}
