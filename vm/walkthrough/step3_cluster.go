package walkthrough

// Step 3: the cluster: machines, KV members, a shared key.

import (
	"fmt"
	"strings"
	"time"
)

// ClusterResult is step 3's output.
type ClusterResult struct {
	Machines string // pithctl list-machines --full --no-legend (node1)
	Members  string // pithctl member list
	Got      string // /message read on node 2
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
	if res.Members, err = d.show(ctx, 0, "pithctl member list"); err != nil {
		return res, err
	}
	d.say("\nA key written on one node is read on another:")
	if _, err := d.show(ctx, 0, "pithctl kv set /message hello"); err != nil {
		return res, err
	}
	if _, err := waitFor(ctx, "/message on node2", time.Second, func() (bool, string) {
		out, err := d.try(ctx, 1, "pithctl kv get /message")
		res.Got = out
		return err == nil && out == "hello", out + fmt.Sprint(err)
	}); err != nil {
		return res, err
	}
	d.transcript("core@"+d.NodeName(1)+" ", "pithctl kv get /message", res.Got)
	d.timed("cluster", start)
	return res, nil
}
