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
	out, err := d.publishNext(ctx)
	if err != nil {
		return res, err
	}
	res.Released = out
	r := d.newRollout(&res)
	if _, err := waitFor(ctx, "every node on "+d.Next, 2*time.Second, func() (bool, string) { return r.poll(ctx) }); err != nil {
		return res, err
	}
	res.Took = time.Since(r.published)
	if err := d.showUpdated(ctx, &res, r.published); err != nil {
		return res, err
	}
	d.timed("update", start)
	return res, nil
}

// publishNext switches downed nodes back on, then publishes release N+1
// (built in the background since step 1) to the stable channel.
func (d *Demo) publishNext(ctx context.Context) (string, error) {
	for i := range d.cfg.Nodes {
		if d.down[i] {
			d.say("Switching %s back on first: it rejoins the KV from its data and updates with the others.", d.NodeName(i))
			if err := d.restart(i); err != nil {
				return "", err
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
		return "", fmt.Errorf("preparing release %s: %w", d.Next, err)
	}
	d.say("(in the background while the nodes booted: %s)", d.prepNote)
	args := []string{"release", "--channel", "stable", "--image", filepath.Join(d.cfg.StateDir, "next"), "--key", d.cfg.ReleaseKey, "--repo", d.repo, "--delta-from", d.Version}
	out, err := d.runPith(ctx, args...)
	if err != nil {
		return "", err
	}
	d.transcript("", "pith "+strings.Join(args, " "), out)
	return out, nil
}

// rollout follows the nodes through the rolling update, one poll at a
// time, printing each change of a node's phase and of the lock's holders.
type rollout struct {
	d         *Demo
	res       *UpdateResult
	published time.Time
	phase     []string
	asked     []bool
	gone      []time.Time
	lastOld   []time.Time // last seen answering on the old release
	counted   []bool      // in res.Order
	holders   string
	idName    map[string]string
}

func (d *Demo) newRollout(res *UpdateResult) *rollout {
	n := d.cfg.Nodes
	r := &rollout{d: d, res: res, published: time.Now(), phase: make([]string, n), asked: make([]bool, n),
		gone: make([]time.Time, n), lastOld: make([]time.Time, n), counted: make([]bool, n), idName: map[string]string{}}
	for i, id := range d.MachineIDs {
		r.idName[id] = d.NodeName(i)
	}
	return r
}

// poll is done once every node runs N+1 with its update settled and no
// one holds the reboot lock.
func (r *rollout) poll(ctx context.Context) (bool, string) {
	done := 0
	for i := range r.d.cfg.Nodes {
		if r.node(ctx, i) {
			done++
		}
	}
	r.lock(ctx)
	return done == r.d.cfg.Nodes && r.holders == "", fmt.Sprintf("phases %v, lock holders %q", r.phase, r.holders)
}

// node records node i's progress and reports whether it is done.
func (r *rollout) node(ctx context.Context, i int) bool {
	d, res := r.d, r.res
	st, ok := d.updateStatus(ctx, i)
	now := time.Now()
	nu := &res.Nodes[i]
	p := "not answering"
	done := false
	if ok {
		p = string(st.Phase)
		if st.Running == d.Next {
			p = "running " + d.Next
		}
		nu.Running = st.Running
		if !r.asked[i] && st.Running == d.Version && st.Available != d.Next {
			r.asked[i] = d.httpPost(ctx, d.apiURL(i)+"/pith/v1/update/check") == nil
		}
		for _, e := range st.History {
			if e.Kind == "applied" && e.Version == d.Next {
				nu.Applied = e.Detail
			}
		}
		if st.Running != d.Next {
			r.gone[i] = time.Time{} // a glitch, not a reboot
			r.lastOld[i] = now
		}
		if st.Phase == update.PhaseRebooting && !r.counted[i] {
			nu.Rebooting = now
			res.Order = append(res.Order, i)
			r.counted[i] = true
		}
		if st.Running == d.Next {
			if !r.counted[i] {
				// Its reboot fell between two polls: it went
				// away when it stopped answering, or after it
				// was last seen on the old release.
				nu.Rebooting = cmp.Or(r.gone[i], r.lastOld[i])
				res.Order = append(res.Order, i)
				r.counted[i] = true
			}
			if nu.Back.IsZero() {
				nu.Back = now
			}
			done = hasEvent(st, "updated", d.Next)
		}
	} else if r.gone[i].IsZero() && (r.phase[i] == string(update.PhaseWaitingLock) || r.phase[i] == string(update.PhaseReady)) {
		r.gone[i] = now
	}
	if p != r.phase[i] {
		d.say("  [%s] %s: %s", time.Since(r.published).Round(time.Second), d.NodeName(i), p)
		r.phase[i] = p
	}
	return done
}

// lock records the reboot lock's holders.
func (r *rollout) lock(ctx context.Context) {
	sem, ok := r.d.semaphore(ctx)
	if !ok {
		return
	}
	r.res.MaxHolders = max(r.res.MaxHolders, len(sem.Holders))
	var names []string
	for _, h := range sem.Holders {
		names = append(names, cmp.Or(r.idName[h], h))
	}
	if h := strings.Join(names, ","); h != r.holders {
		if h == "" {
			r.d.say("  [%s] reboot lock: free", time.Since(r.published).Round(time.Second))
		} else {
			r.d.say("  [%s] reboot lock: held by %s", time.Since(r.published).Round(time.Second), h)
		}
		r.holders = h
	}
}

// showUpdated prints the order of the reboots and the nodes' update
// status, and waits for the services to run everywhere again.
func (d *Demo) showUpdated(ctx context.Context, res *UpdateResult, published time.Time) error {
	d.say("every node runs %s, %s after the release was published; they rebooted one at a time:", d.Next, res.Took.Round(time.Second))
	for _, i := range res.Order {
		nu := res.Nodes[i]
		d.say("  %s: rebooted at +%s, back on %s at +%s (%s)", d.NodeName(i), nu.Rebooting.Sub(published).Round(time.Second), d.Next, nu.Back.Sub(published).Round(time.Second), nu.Applied)
	}
	for _, c := range []string{"pithctl update status", "pithctl update history", "grep VERSION= /usr/lib/os-release"} {
		if _, err := d.show(ctx, 0, c); err != nil {
			return err
		}
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
		return err
	}
	var err error
	res.ListUnits, err = d.show(ctx, 0, "sudo pithctl list-units")
	return err
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
	b, code, err := d.httpGet(ctx, d.apiURL(i)+"/pith/v1/update")
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
		b, code, err := d.httpGet(ctx, d.apiURL(i)+"/v2/keys"+update.SemaphoreKey+"?quorum=true")
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
