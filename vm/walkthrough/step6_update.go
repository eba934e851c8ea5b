package walkthrough

// Step 6: updates: publish N+1 to the stable channel as a phased rollout
// (one node first, then the rest), applied one machine at a time.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"
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
	// Percent is the first wave's share, First the one node it admitted;
	// HeldBack says why each other node stayed on the old release then,
	// as it reported to the channel server.
	Percent  float64
	First    int
	HeldBack []string
	// Rollout is `pith release rollout status` after the first wave.
	Rollout    string
	Nodes      []NodeUpdate
	Order      []int // nodes in the order they rebooted
	MaxHolders int   // most reboot-lock holders seen at once
	Released   string
	Took       time.Duration // publish -> every node on the new release
	ListUnits  string
}

// Update switches the stopped node back on, sets a phased rollout of
// release Next on stable that admits one node, publishes Next (with a
// delta against the running release) and tells every node to check: the
// admitted node updates, the others check in and stay. Then the rollout
// goes to 100% and the rest follow, taking the reboot lock one at a time,
// rebooting into the other slot and coming back on the new version.
func (d *Demo) Update() (UpdateResult, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	res := UpdateResult{Nodes: make([]NodeUpdate, d.cfg.Nodes), HeldBack: make([]string, d.cfg.Nodes)}
	d.heading(6, "Updates: publish "+d.Next+" to the stable channel, one node first")
	if err := d.restartDowned(); err != nil {
		return res, err
	}
	d.say(`The channel server steers who takes a release: a phased rollout admits a
machine only when its stable place for the release (a hash of its machine ID
and the version, 0-100) is under the rollout's share. The rollout is set
before the release is published, so no machine takes it at 100%% in between.
Watch the fleet on the channel server's dashboard: %s`, d.DashboardURL())
	var err error
	if res.Percent, res.First, err = d.firstWave(ctx, d.Next); err != nil {
		return res, err
	}
	out, err := d.publishNext(ctx)
	if err != nil {
		return res, err
	}
	res.Released = out
	r := d.newRollout(&res)
	for i := range r.admitted {
		r.admitted[i] = i == res.First
	}
	if _, err := waitFor(ctx, d.NodeName(res.First)+" on "+d.Next+", the others held back", 2*time.Second, func() (bool, string) { return r.poll(ctx) }); err != nil {
		return res, err
	}
	if r.err != nil {
		return res, r.err
	}
	d.say("\n%s runs %s; the others checked in and were held back:", d.NodeName(res.First), d.Next)
	for i, why := range res.HeldBack {
		if i != res.First {
			d.say("  %s: %s", d.NodeName(i), why)
		}
	}
	if res.Rollout, err = d.rolloutCmd(ctx, false, "status"); err != nil {
		return res, err
	}
	d.say(`
The first node came back healthy, so the operator lets the rest in. Raising
the share admits them (it never takes the release away from a machine that
has it); a ramp (--over 2h) would admit them gradually instead.`)
	if _, err := d.rolloutCmd(ctx, false, "--version", d.Next, "--percent", "100"); err != nil {
		return res, err
	}
	for i := range r.admitted {
		r.admitted[i] = true
		r.asked[i] = false // ask again: the last check held them back
	}
	if _, err := waitFor(ctx, "every node on "+d.Next, 2*time.Second, func() (bool, string) { return r.poll(ctx) }); err != nil {
		return res, err
	}
	if r.err != nil {
		return res, r.err
	}
	res.Took = time.Since(r.published)
	if err := d.showUpdated(ctx, &res, r.published); err != nil {
		return res, err
	}
	d.timed("update", start)
	return res, nil
}

// firstWave sets the stable channel's rollout of version to a share that
// admits exactly one node, before the release is published (so no
// machine can take it meanwhile), and returns the share and the node.
// extra are more `pith release rollout` flags (a halt rule).
func (d *Demo) firstWave(ctx context.Context, version string, extra ...string) (float64, int, error) {
	p, first, err := admitOne(d.MachineIDs, version)
	if err != nil {
		return 0, 0, err
	}
	d.say("A share of %s%% admits one of the %d nodes to %s: %s (its place for %s is %.1f; the others' are above).",
		pct(p), d.cfg.Nodes, version, d.NodeName(first), version, channels.Bucket(d.MachineIDs[first], version))
	_, err = d.rolloutCmd(ctx, true, append([]string{"--version", version, "--percent", pct(p)}, extra...)...)
	return p, first, err
}

// restartDowned switches nodes stopped by an earlier step back on.
func (d *Demo) restartDowned() error {
	for i := range d.cfg.Nodes {
		if d.down[i] {
			d.say("Switching %s back on first: it rejoins the KV from its data and updates with the others.", d.NodeName(i))
			if err := d.restart(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// publishNext publishes release N+1 (built in the background since step
// 1) to the stable channel.
func (d *Demo) publishNext(ctx context.Context) (string, error) {
	d.say(`Each node follows the channel named in its cloud-config (group: stable). A new
release is signed with the release key whose public half is baked into the
image, and carries a delta against %s: only the changed blocks of /usr travel.
The nodes download and write it to their other /usr slot, then, with
reboot-strategy etcd-lock, take the cluster's reboot lock (locksmith's
semaphore in the KV, one holder at a time) before rebooting into it, and
release it once they are healthy on the new version. Each reports what it
does (checked, held back, written, rebooting, good, rolled back) to the
channel server, signed with its own key.`, d.Version)
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
	// admitted: the nodes this wave updates; the others must check in,
	// be held back and stay on the old release.
	admitted []bool
	askedAt  []time.Time
	err      error // a held-back node took the release
}

func (d *Demo) newRollout(res *UpdateResult) *rollout {
	n := d.cfg.Nodes
	r := &rollout{d: d, res: res, published: time.Now(), phase: make([]string, n), asked: make([]bool, n),
		gone: make([]time.Time, n), lastOld: make([]time.Time, n), counted: make([]bool, n), idName: map[string]string{}, admitted: make([]bool, n), askedAt: make([]time.Time, n)}
	for i, id := range d.MachineIDs {
		r.idName[id] = d.NodeName(i)
	}
	return r
}

// poll is done once every admitted node runs N+1 with its update settled,
// every other node reported to the channel server that the rollout held
// it back, and no one holds the reboot lock.
func (r *rollout) poll(ctx context.Context) (bool, string) {
	done := 0
	fv, ferr := r.d.Fleet(ctx)
	r.d.updateStatuses(ctx, func(i int, s nodeStatus) bool {
		onNext := r.node(ctx, i, s)
		switch {
		case r.admitted[i]:
			if onNext {
				done++
			}
		case r.res.Nodes[i].Running == r.d.Next:
			r.err = fmt.Errorf("%s took %s, which the rollout did not admit it to", r.d.NodeName(i), r.d.Next)
			return false
		case ferr == nil && r.heldBack(fv, i):
			done++
		case r.asked[i] && time.Since(r.askedAt[i]) > time.Minute:
			// Reports are best-effort: a lost one is asked for again.
			r.asked[i] = false
		}
		return true
	})
	if r.err != nil {
		return true, r.err.Error()
	}
	r.lock(ctx)
	return done == r.d.cfg.Nodes && r.holders == "", fmt.Sprintf("phases %v, lock holders %q, fleet %v", r.phase, r.holders, ferr)
}

// heldBack reports whether node i's last report to the channel server
// says the rollout held it back from N+1, and records why.
func (r *rollout) heldBack(fv channels.FleetView, i int) bool {
	m, ok := lastReport(fv, r.d.MachineIDs[i])
	if !ok || m.Event != channels.EventChecked || m.Version != r.d.Next || !strings.HasPrefix(m.Reason, "held back: ") {
		return false
	}
	if r.res.HeldBack[i] != m.Reason {
		r.d.say("  [%s] %s reports: %s", time.Since(r.published).Round(time.Second), r.d.NodeName(i), m.Reason)
		r.res.HeldBack[i] = m.Reason
	}
	return true
}

// node records node i's progress, from its status st, and reports
// whether it is done.
func (r *rollout) node(ctx context.Context, i int, s nodeStatus) bool {
	d, res := r.d, r.res
	st, ok := s.st, s.ok
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
		// Ask a node that has not found N+1, or that the rollout held
		// back from it (it is asked again once admitted).
		if !r.asked[i] && st.Running == d.Version && (st.Available != d.Next || st.HeldBack != "") {
			r.asked[i], r.askedAt[i] = d.httpPost(ctx, d.apiURL(i)+"/pith/v1/update/check") == nil, now
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
		if st.Phase == node.PhaseRebooting && !r.counted[i] {
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
	} else if r.gone[i].IsZero() && (r.phase[i] == string(node.PhaseWaitingLock) || r.phase[i] == string(node.PhaseReady)) {
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
	for _, c := range []string{"sudo pithctl update status", "sudo pithctl update history", "grep VERSION= /usr/lib/os-release"} {
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

func hasEvent(st node.UpdateStatus, kind, version string) bool {
	return slices.ContainsFunc(st.History, func(e node.UpdateEvent) bool { return e.Kind == kind && e.Version == version })
}

// updateStatus reads node i's update agent through its forwarded API port.
func (d *Demo) updateStatus(ctx context.Context, i int) (node.UpdateStatus, bool) {
	var st node.UpdateStatus
	if !d.Machine(i).Running() {
		return st, false
	}
	b, code, err := d.httpGet(ctx, d.apiURL(i)+"/pith/v1/update")
	if err != nil || code != 200 {
		return st, false
	}
	return st, json.Unmarshal(b, &st) == nil
}

// nodeStatus is a node's update status as read by updateStatus.
type nodeStatus struct {
	st node.UpdateStatus
	ok bool
}

// updateStatuses reads every node's update status at once and hands each
// to fn, in the caller's goroutine, as it arrives, until fn returns false:
// a node that does not answer (rebooting) costs a poll its timeout once,
// and holds back neither the other nodes' reads nor what is done with
// them (asking an admitted node to check).
func (d *Demo) updateStatuses(ctx context.Context, fn func(i int, s nodeStatus) bool) {
	type read struct {
		i int
		s nodeStatus
	}
	reads := make(chan read, d.cfg.Nodes) // never blocks a reader fn stopped taking
	for i := range d.cfg.Nodes {
		go func() {
			st, ok := d.updateStatus(ctx, i)
			reads <- read{i, nodeStatus{st, ok}}
		}()
	}
	for range d.cfg.Nodes {
		r := <-reads
		if !fn(r.i, r.s) {
			return
		}
	}
}

// semaphore reads the reboot lock through every running node at once and
// returns the first answer (they are quorum reads: any member's will do).
func (d *Demo) semaphore(ctx context.Context) (rebootlock.SemaphoreState, bool) {
	type answer struct {
		sem rebootlock.SemaphoreState
		ok  bool
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(chan answer, d.cfg.Nodes)
	asked := 0
	for i := range d.cfg.Nodes {
		if !d.Machine(i).Running() {
			continue
		}
		asked++
		go func() {
			sem, ok := d.semaphoreOf(ctx, i)
			answers <- answer{sem, ok}
		}()
	}
	for range asked {
		if a := <-answers; a.ok {
			return a.sem, true
		}
	}
	return rebootlock.SemaphoreState{}, false
}

// semaphoreOf reads the reboot lock through node i.
func (d *Demo) semaphoreOf(ctx context.Context, i int) (rebootlock.SemaphoreState, bool) {
	var sem rebootlock.SemaphoreState
	// quorum: a node that has just rejoined would answer from its
	// stale copy (the lock as it was before its reboot).
	b, code, err := d.httpGet(ctx, d.apiURL(i)+"/v2/keys"+rebootlock.SemaphoreKey+"?quorum=true")
	if err != nil || (code != 200 && code != 404) {
		return sem, false
	}
	if code == 404 {
		return sem, true // never taken
	}
	var r struct {
		Node struct {
			Value string `json:"value"`
		} `json:"node"`
	}
	return sem, json.Unmarshal(b, &r) == nil && json.Unmarshal([]byte(r.Node.Value), &sem) == nil
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
