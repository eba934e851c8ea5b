package walkthrough

// A power cut of the whole cluster under load (issue 14): not one of the
// walkthrough's steps, run by TestDemo after them and by `make soak`.

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"time"

	"github.com/pith-os/pith/internal/kvcheck"
	"github.com/pith-os/pith/vm"
)

// PowerCutOptions shape one cut.
type PowerCutOptions struct {
	N       int // the cut's number: its keys are under /powercut/N
	Clients int // default 6, spread over the members
	// Before and After are how many register operations the load records
	// before the cut and after the cluster serves again (default 150, 60).
	Before, After int
	// Jitter adds a random delay of up to this much before the cut, so
	// repeated cuts land at different moments of the load.
	Jitter time.Duration
	Seed   int64
}

// PowerCutResult is what one cut checked.
type PowerCutResult struct {
	Ops      int            // register operations recorded (before + after)
	Check    kvcheck.Result // porcupine over them
	Acked    int            // unique keys whose put was acknowledged
	Lost     []string       // acknowledged keys a quorum read no longer returns
	Stale    []string       // plain reads older than the client's own session
	Outcomes map[string]int
	Serving  time.Duration // cut -> every member takes a write and a quorum read
	Took     time.Duration // the whole cut, load and checks included
}

// kvClient reaches the members' client ports from the host, as step 7's
// closing text tells a user to (a restarted node gets new host ports),
// with the admin certificate (kvcheck's 10 s timeout).
func (d *Demo) kvClient() *kvcheck.Client {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: d.client.Transport}
	return &kvcheck.Client{Members: d.cfg.Nodes, URL: d.apiURL, HTTP: hc}
}

// PowerCut runs clients writing and reading through all members, kills
// every node's QEMU at once mid-load (SIGKILL: a power cut), boots them
// again from the same disks, waits until every member serves again, runs
// the load a while longer, and checks: no acknowledged write lost, the
// whole history linearizable, no plain read behind its client's session.
// The cluster must be healthy (all members up) when it is called.
func (d *Demo) PowerCut(ctx context.Context, o PowerCutOptions) (PowerCutResult, error) {
	start := time.Now()
	var res PowerCutResult
	if o.Clients == 0 {
		o.Clients = 6
	}
	if o.Before == 0 {
		o.Before = 150
	}
	if o.After == 0 {
		o.After = 60
	}
	prefix := fmt.Sprintf("/powercut/%d", o.N)
	keys := []string{prefix + "/lin/a", prefix + "/lin/b", prefix + "/lin/c", prefix + "/lin/d"}
	c := d.kvClient()
	h := kvcheck.NewHistory()
	load := func(seed int64) (stop func()) {
		done := make(chan struct{})
		l := &kvcheck.Load{Client: c, History: h, Clients: o.Clients, Keys: keys, AckedDir: prefix + "/acked",
			Seed: seed, Name: d.NodeName, Backoff: 500 * time.Millisecond}
		wg := l.Run(done)
		return func() { close(done); wg.Wait() }
	}
	waitOps := func(what string, n int) error {
		target := h.Count() + n
		_, err := waitFor(ctx, what, 200*time.Millisecond, func() (bool, string) {
			got := h.Count()
			return got >= target, fmt.Sprintf("%d of %d operations; answers %v", got, target, h.Outcomes())
		})
		return err
	}

	d.say("\n=== Power cut %d: all %d nodes at once, under load ===", o.N, d.cfg.Nodes)
	d.say("%d clients write and read %s through every member (recorded for porcupine)...", o.Clients, prefix)
	stopLoad := load(o.Seed * 1000)
	if err := waitOps("load before the cut", o.Before); err != nil {
		stopLoad()
		return res, err
	}
	if o.Jitter > 0 {
		time.Sleep(time.Duration(rand.New(rand.NewSource(o.Seed)).Int63n(int64(o.Jitter))))
	}
	cut := time.Now()
	vm.PowerCut(d.Cluster.Machines...)
	stopLoad()
	before := h.Count()
	d.say("SIGKILLed every QEMU after %d operations (%d acknowledged unique puts); booting them from the same disks...", before, len(h.Acked()))
	for i := range d.Cluster.Machines {
		d.down[i] = true
		if err := d.restart(i); err != nil {
			return res, err
		}
	}
	if err := d.waitServing(ctx, c, prefix); err != nil {
		return res, err
	}
	res.Serving = time.Since(cut)
	d.say("every member takes a write and a quorum read again %s after the cut", res.Serving.Round(time.Second))

	stopLoad = load(o.Seed*1000 + 500)
	err := waitOps("load after the cut", o.After)
	stopLoad()
	if err != nil {
		return res, err
	}
	acked := h.Acked()
	res.Acked = len(acked)
	for i := 0; i < d.cfg.Nodes; i++ {
		lost, err := c.Missing(ctx, i, acked)
		if err != nil {
			return res, fmt.Errorf("reading the acknowledged keys through %s: %w", d.NodeName(i), err)
		}
		if len(lost) > len(res.Lost) {
			res.Lost = lost
		}
	}
	ops := h.Ops()
	res.Ops = len(ops)
	res.Check = kvcheck.Check(ops)
	res.Stale = h.Stale()
	res.Outcomes = h.Outcomes()
	res.Took = time.Since(start)
	d.say("checked: %d of %d acknowledged writes found; history %s; %d stale plain reads",
		res.Acked-len(res.Lost), res.Acked, res.Check, len(res.Stale))
	return res, nil
}

// waitServing waits until every member takes a write and answers a quorum
// read of it.
func (d *Demo) waitServing(ctx context.Context, c *kvcheck.Client, prefix string) error {
	n := 0
	_, err := waitFor(ctx, "every member serving writes and quorum reads after the cut", 2*time.Second, func() (bool, string) {
		for i := 0; i < d.cfg.Nodes; i++ {
			n++
			key, val := fmt.Sprintf("%s/serving/%s", prefix, d.NodeName(i)), fmt.Sprint(n)
			st, r, err := c.Do(ctx, i, http.MethodPut, key, url.Values{"value": {val}})
			if err != nil || st != 200 && st != 201 {
				return false, fmt.Sprintf("%s: put %d %+v %v", d.NodeName(i), st, r, err)
			}
			st, r, err = c.Do(ctx, i, http.MethodGet, key, url.Values{"quorum": {"true"}})
			if err != nil || st != 200 || r == nil || r.Node.Value != val {
				return false, fmt.Sprintf("%s: quorum get %d %+v %v", d.NodeName(i), st, r, err)
			}
		}
		return true, ""
	})
	return err
}
