package walkthrough

// Step 3: the cluster: machines, KV members, a shared key.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ClusterResult is step 3's output.
type ClusterResult struct {
	Machines string // pithctl list-machines --full --no-legend (node1)
	Members  string // pithctl member list
	Got      string // /message read on node 2
	// From the workstation, on node1's forwarded client port:
	HostMembers string // pithctl member list with the admin certificate
	NoCert      error  // pithctl kv get without a certificate (refused)
	ReaderGot   string // the reader's kv get /message
	ReaderSet   error  // the reader's kv set /message (refused)
	After       string // /message read back with the admin certificate
}

// ShowCluster lists the scheduler's machines and the KV's members, and
// writes a key on node1 that node2 reads.
func (d *Demo) ShowCluster() (ClusterResult, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	var res ClusterResult
	d.heading(3, "The cluster: machines, KV members, a shared key")
	d.say(`pithd on every node runs the KV (etcd's v2 API, replicated with raft) and the
scheduler (fleet's model and API). The scheduler lists the machines it can place
units on, with their metadata from cloud-config (role=demo):`)
	if _, err := waitFor(ctx, fmt.Sprintf("%d machines in the scheduler", d.cfg.Nodes), 2*time.Second, func() (bool, string) {
		out, err := d.try(ctx, 0, "sudo pithctl list-machines --no-legend --full")
		res.Machines = out
		return err == nil && len(strings.Split(out, "\n")) == d.cfg.Nodes, out + fmt.Sprint(err)
	}); err != nil {
		return res, err
	}
	if _, err := d.show(ctx, 0, "sudo pithctl list-machines"); err != nil {
		return res, err
	}
	d.say("\nThe KV's members (etcdctl member list):")
	var err error
	if res.Members, err = d.show(ctx, 0, "sudo pithctl member list"); err != nil {
		return res, err
	}
	d.say(`(On a node, root's pithctl reaches pithd through its unix socket,
/run/pith/pithd.sock, mode 0600, with no certificate; core has none and the
network ports take nothing else.)`)
	d.say("\nA key written on one node is read on another:")
	if _, err := d.show(ctx, 0, "sudo pithctl kv set /message hello"); err != nil {
		return res, err
	}
	if _, err := waitFor(ctx, "/message on node2", time.Second, func() (bool, string) {
		out, err := d.try(ctx, 1, "sudo pithctl kv get /message")
		res.Got = out
		return err == nil && out == "hello", out + fmt.Sprint(err)
	}); err != nil {
		return res, err
	}
	d.transcript("core@"+d.NodeName(1)+" ", "sudo pithctl kv get /message", res.Got)
	if err := d.fromWorkstation(ctx, &res); err != nil {
		return res, err
	}
	d.timed("cluster", start)
	return res, nil
}

// fromWorkstation reaches node1's client port from the workstation: with
// the admin certificate, with none (refused at the handshake), and with
// the reader's, which reads but may not write.
func (d *Demo) fromWorkstation(ctx context.Context, res *ClusterResult) error {
	d.say(`
From this workstation the cluster is reached with a certificate. node1's
client port is forwarded to %s; its certificate names 127.0.0.1 too:`, d.apiURL(0))
	d.transcript("", "export "+strings.Join(d.hostEnv(0, "admin"), " "), "")
	var err error
	if res.HostMembers, err = d.hostPithctl(ctx, 0, "admin", "", "member", "list"); err != nil {
		return err
	}
	d.say("\nWithout a certificate the port refuses the connection:")
	_, res.NoCert = d.hostPithctl(ctx, 0, "", "PITHCTL_CERT= PITHCTL_KEY= ", "kv", "get", "/message")
	if res.NoCert == nil {
		return errors.New("pithctl without a certificate read /message: the client port is open to anyone")
	}
	d.say("\nThe reader certificate may read, not write (403, and nothing changes):")
	reader := fmt.Sprintf("PITHCTL_CERT=%s PITHCTL_KEY=%s ", d.certFile("reader"), d.keyFile("reader"))
	if res.ReaderGot, err = d.hostPithctl(ctx, 0, "reader", reader, "kv", "get", "/message"); err != nil {
		return err
	}
	_, res.ReaderSet = d.hostPithctl(ctx, 0, "reader", reader, "kv", "set", "/message", "overwritten")
	if res.ReaderSet == nil {
		return errors.New("the reader certificate wrote /message")
	}
	res.After, err = d.hostPithctl(ctx, 0, "admin", "", "kv", "get", "/message")
	return err
}
