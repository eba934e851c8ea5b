package walkthrough

// Step 6: updates: publish N+1 to the stable channel, applied one machine at a time.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pith-os/pith/agent/update"
	"github.com/pith-os/pith/vm"
)

// NodeUpdate is one node's update as the host saw it.
type NodeUpdate struct {
	Rebooting time.Time // first seen rebooting (holding the lock)
	Back      time.Time // first seen running the new release
	Running   string
	Applied   string // the agent's "applied" event detail (download/write times, delta)
}

// UpdateResult is step 6's output.
type UpdateResult struct {
	Nodes      []NodeUpdate
	Order      []int // nodes in the order they rebooted
	MaxHolders int   // most reboot-lock holders seen at once
	Released   string
	Took       time.Duration // publish -> every node on the new release
	ListUnits  string
}

// Update switches the stopped node back on, publishes release Next on
// stable (with a delta against the running release), tells every node to
// check, and follows them as they take the reboot lock one at a time,
// reboot into the other slot and come back on the new version.
func (d *Demo) Update() (UpdateResult, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	res := UpdateResult{Nodes: make([]NodeUpdate, d.cfg.Nodes)}
	d.heading(6, "Updates: publish "+d.Next+" to the stable channel")
	for i := range d.cfg.Nodes {
		if d.down[i] {
			d.say("Switching %s back on first: it rejoins the KV from its data and updates with the others.", d.NodeName(i))
			if err := d.restart(i); err != nil {
				return res, err
			}
		}
	}
	d.say(`Each node follows the channel named in its cloud-config (group: stable). A new
release is signed with the release key whose public half is baked into the
image, and carries a delta against %s: only the changed blocks of /usr travel.
The nodes download and write it to their other /usr slot, then, with
reboot-strategy etcd-lock, take the cluster's reboot lock (locksmith's
semaphore in the KV, one holder at a time) before rebooting into it, and
release it once they are healthy on the new version.`, d.Version)
	if err := d.waitPrepared(); err != nil {
		return res, fmt.Errorf("preparing release %s: %w", d.Next, err)
	}
	d.say("(in the background while the nodes booted: %s)", d.prepNote)
	args := []string{"release", "--channel", "stable", "--image", filepath.Join(d.cfg.StateDir, "next"), "--key", d.cfg.ReleaseKey, "--repo", d.repo, "--delta-from", d.Version}
	out, err := d.runPith(ctx, args...)
	if err != nil {
		return res, err
	}
	res.Released = out
	d.transcript("", "pith "+strings.Join(args, " "), out)
	published := time.Now()

	phase := make([]string, d.cfg.Nodes)
	asked := make([]bool, d.cfg.Nodes)
	gone := make([]time.Time, d.cfg.Nodes)
	lastOld := make([]time.Time, d.cfg.Nodes) // last seen answering on the old release
	counted := make([]bool, d.cfg.Nodes)      // in res.Order
	holders := ""
	idName := map[string]string{}
	for i, id := range d.MachineIDs {
		idName[id] = d.NodeName(i)
	}
	_, err = waitFor(ctx, "every node on "+d.Next, 2*time.Second, func() (bool, string) {
		done := 0
		for i := range d.cfg.Nodes {
			st, ok := d.updateStatus(ctx, i)
			now := time.Now()
			nu := &res.Nodes[i]
			p := "not answering"
			if ok {
				p = string(st.Phase)
				if st.Running == d.Next {
					p = "running " + d.Next
				}
				nu.Running = st.Running
				if !asked[i] && st.Running == d.Version && st.Available != d.Next {
					asked[i] = httpPost(ctx, d.apiURL(i)+"/pith/v1/update/check") == nil
				}
				for _, e := range st.History {
					if e.Kind == "applied" && e.Version == d.Next {
						nu.Applied = e.Detail
					}
				}
				if st.Running != d.Next {
					gone[i] = time.Time{} // a glitch, not a reboot
					lastOld[i] = now
				}
				if st.Phase == update.PhaseRebooting && !counted[i] {
					nu.Rebooting = now
					res.Order = append(res.Order, i)
					counted[i] = true
				}
				if st.Running == d.Next {
					if !counted[i] {
						// Its reboot fell between two polls: it went
						// away when it stopped answering, or after it
						// was last seen on the old release.
						nu.Rebooting = cmp.Or(gone[i], lastOld[i])
						res.Order = append(res.Order, i)
						counted[i] = true
					}
					if nu.Back.IsZero() {
						nu.Back = now
					}
					if hasEvent(st, "updated", d.Next) {
						done++
					}
				}
			} else if gone[i].IsZero() && (phase[i] == string(update.PhaseWaitingLock) || phase[i] == string(update.PhaseReady)) {
				gone[i] = now
			}
			if p != phase[i] {
				d.say("  [%s] %s: %s", time.Since(published).Round(time.Second), d.NodeName(i), p)
				phase[i] = p
			}
		}
		if sem, ok := d.semaphore(ctx); ok {
			res.MaxHolders = max(res.MaxHolders, len(sem.Holders))
			var names []string
			for _, h := range sem.Holders {
				names = append(names, cmp.Or(idName[h], h))
			}
			if h := strings.Join(names, ","); h != holders {
				if h == "" {
					d.say("  [%s] reboot lock: free", time.Since(published).Round(time.Second))
				} else {
					d.say("  [%s] reboot lock: held by %s", time.Since(published).Round(time.Second), h)
				}
				holders = h
			}
		}
		return done == d.cfg.Nodes && holders == "", fmt.Sprintf("phases %v, lock holders %q", phase, holders)
	})
	if err != nil {
		return res, err
	}
	res.Took = time.Since(published)
	d.say("every node runs %s, %s after the release was published; they rebooted one at a time:", d.Next, res.Took.Round(time.Second))
	for _, i := range res.Order {
		nu := res.Nodes[i]
		d.say("  %s: rebooted at +%s, back on %s at +%s (%s)", d.NodeName(i), nu.Rebooting.Sub(published).Round(time.Second), d.Next, nu.Back.Sub(published).Round(time.Second), nu.Applied)
	}
	if _, err := d.show(ctx, 0, "pithctl update status"); err != nil {
		return res, err
	}
	if _, err := d.show(ctx, 0, "pithctl update history"); err != nil {
		return res, err
	}
	if _, err := d.show(ctx, 0, "grep VERSION= /usr/lib/os-release"); err != nil {
		return res, err
	}
	d.say("\nThe scheduler kept the services running while machines rebooted (units move off a machine that is away longer than the TTL):")
	if _, err := waitFor(ctx, "mongo@1, mongo@2 and announce.service on every machine active after the updates", 2*time.Second, func() (bool, string) {
		rows, out, err := d.ListUnits(ctx, 0)
		mongo, announce := 0, 0
		for _, r := range rows {
			switch {
			case strings.HasPrefix(r.Unit, "mongo@") && r.Active == "active":
				mongo++
			case r.Unit == "announce.service" && r.Active == "active":
				announce++
			}
		}
		return err == nil && mongo == 2 && announce == d.cfg.Nodes, out + fmt.Sprint(err)
	}); err != nil {
		return res, err
	}
	if res.ListUnits, err = d.show(ctx, 0, "sudo pithctl list-units"); err != nil {
		return res, err
	}
	d.timed("update", start)
	return res, nil
}

func hasEvent(st update.Status, kind, version string) bool {
	return slices.ContainsFunc(st.History, func(e update.Event) bool { return e.Kind == kind && e.Version == version })
}

// updateStatus reads node i's update agent through its forwarded API port.
func (d *Demo) updateStatus(ctx context.Context, i int) (update.Status, bool) {
	var st update.Status
	if !d.Machine(i).Running() {
		return st, false
	}
	b, code, err := httpGet(ctx, d.apiURL(i)+"/pith/v1/update")
	if err != nil || code != 200 {
		return st, false
	}
	return st, json.Unmarshal(b, &st) == nil
}

// semaphore reads the reboot lock from the first node whose KV answers.
func (d *Demo) semaphore(ctx context.Context) (update.SemaphoreState, bool) {
	var sem update.SemaphoreState
	for i := range d.cfg.Nodes {
		if !d.Machine(i).Running() {
			continue
		}
		// quorum: a node that has just rejoined would answer from its
		// stale copy (the lock as it was before its reboot).
		b, code, err := httpGet(ctx, d.apiURL(i)+"/v2/keys"+update.SemaphoreKey+"?quorum=true")
		if err != nil || (code != 200 && code != 404) {
			continue
		}
		if code == 404 {
			return sem, true // never taken
		}
		var r struct {
			Node struct {
				Value string `json:"value"`
			} `json:"node"`
		}
		if json.Unmarshal(b, &r) == nil && json.Unmarshal([]byte(r.Node.Value), &sem) == nil {
			return sem, true
		}
	}
	return sem, false
}

// restart switches node i back on: a new QEMU continuing its disk (a new
// overlay on the old one), with the same name, addresses and key.
func (d *Demo) restart(i int) error {
	old := d.Machine(i)
	cfg := old.Config
	cfg.Image = old.Disk
	cfg.DiskSize = 0
	d.restarts++
	m, err := vm.Start(d.life, cfg, filepath.Join(d.Cluster.Dir, fmt.Sprintf("%s-%d", cfg.Name, d.restarts+1)))
	if err != nil {
		return fmt.Errorf("switch %s back on: %w", cfg.Name, err)
	}
	d.Cluster.Machines[i] = m
	delete(d.down, i)
	return d.Cluster.WriteState()
}
