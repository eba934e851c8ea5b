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
	pithctl := filepath.Join(d.cfg.BinDir, "pithctl")
	ca, crt, key := filepath.Join(d.ClusterDir(), "ca.crt"), d.certFile("admin"), d.keyFile("admin")
	fmt.Fprintf(&b, "The KV (etcd v2 API) from this workstation, with the admin certificate (mutual TLS):\n")
	fmt.Fprintf(&b, "  export %s\n", strings.Join(d.hostEnv(0, "admin"), " "))
	fmt.Fprintf(&b, "  %s kv ls --recursive --no-sync /\n", pithctl)
	fmt.Fprintf(&b, "  curl --cacert %s --cert %s --key %s %s/v2/keys/message\n", ca, crt, key, ep)
	fmt.Fprintf(&b, "The scheduler (fleet's v1 API on the same port):\n")
	fmt.Fprintf(&b, "  %s list-units --endpoint %s\n", pithctl, ep)
	fmt.Fprintf(&b, "  fleetctl --endpoint %s --ca-file %s --cert-file %s --key-file %s list-units\n", ep, ca, crt, key)
	fmt.Fprintf(&b, "The cluster's CA and certificates (reader.crt/.key only read): %s\n", d.ClusterDir())
	fmt.Fprintf(&b, "The fleet dashboard (the nodes' update reports, versions, rollouts):\n  %s   (JSON: %sv1/fleet)\n", d.DashboardURL(), d.DashboardURL())
	fmt.Fprintf(&b, "Node consoles: %s/node*/serial.log; machines: pith boot status --state %s\n", st, st)
	fmt.Fprintf(&b, "Stop everything (nodes, discovery and channel servers):\n  %s\n", stopCmd)
	d.heading(7, "Use it")
	fmt.Fprint(d.cfg.Out, b.String())
	return b.String()
}
