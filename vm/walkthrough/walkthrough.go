// Package walkthrough is the seed's CoreOS walkthrough on Pith, step by
// step, on a QEMU cluster: a discovery token, three nodes from one
// cloud-config, the KV shared between them, a fleet-style template
// scheduled with Conflicts, failover when a machine is switched off, and a
// release published to the nodes' channel that they apply one machine at a
// time. `pith demo` runs it for a person (each step explained, commands and
// their output shown); the e2e test runs the same steps and asserts what
// each returns. It lives beside package vm because it drives vm's machines
// and nothing else uses it.
package walkthrough

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pith-os/pith/agent/update"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/vm"
)

// Config is what the walkthrough needs from the workstation.
type Config struct {
	ImageDir   string // make image's output: pith.qcow2, pith.img, pith.manifest.json
	BinDir     string // pith, pithctl and pith-hello for this host (make bin)
	CacheDir   string // pith build's cache; the next release is built from it
	ReleaseKey string // private release key whose public half the image trusts
	StateDir   string // nodes, release repository, servers' logs (created)
	Nodes      int    // default 3
	Accel      vm.Accel
	// Relay returns the QEMU guestfwd rule that hands the guest's
	// connections to guest (IP:PORT) to a process copying them to host
	// (127.0.0.1:PORT). `pith demo relay` and the e2e test binary are two.
	Relay func(guest, host string) string
	// Container is the offline container image (a docker import
	// tarball with /hello, see ContainerTarGz); default: BinDir/pith-hello packed.
	Container []byte
	// Out receives the story: explanations, commands and their output.
	Out io.Writer
	// StepTimeout bounds each step (default: 40 min under TCG, 10 with KVM).
	StepTimeout time.Duration
}

// StepTime is how long one step took.
type StepTime struct {
	Step string
	Took time.Duration
}

// Demo is one run of the walkthrough. Steps run in order; each returns
// what it saw so a test can assert it.
type Demo struct {
	cfg     Config
	life    context.Context // machines and servers live until Close
	stop    context.CancelFunc
	servers []*server
	base    *manifest.Manifest

	Cluster      *vm.Cluster
	DiscoveryURL string // as the nodes see it
	Version      string // the image's release
	Next         string // the release step 6 publishes
	MachineIDs   []string
	Times        []StepTime

	discovery, channel *server
	repo               string
	container          []byte
	prep               chan error // release N and the build of N+1, in the background
	prepOnce           sync.Once
	prepErr            error
	prepNote           string       // what prepare did, how long it took
	down               map[int]bool // nodes switched off
	restarts           int
}

// New checks the inputs and prepares StateDir; nothing runs yet.
func New(cfg Config) (*Demo, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 3 {
		return nil, fmt.Errorf("nodes %d: the walkthrough needs at least 3 (two conflicting units and a spare machine)", cfg.Nodes)
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Relay == nil {
		return nil, errors.New("walkthrough: Config.Relay is required")
	}
	if cfg.StepTimeout == 0 {
		cfg.StepTimeout = 40 * time.Minute
		if cfg.Accel.Name == "kvm" {
			cfg.StepTimeout = 10 * time.Minute
		}
	}
	for _, f := range []string{filepath.Join(cfg.ImageDir, "pith.qcow2"), filepath.Join(cfg.ImageDir, manifest.FileName), filepath.Join(cfg.BinDir, "pith"), cfg.ReleaseKey} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%v (make image builds the image, the binaries and the development release key)", err)
		}
	}
	m, err := manifest.Read(filepath.Join(cfg.ImageDir, manifest.FileName))
	if err != nil {
		return nil, err
	}
	next, err := nextVersion(m.Version)
	if err != nil {
		return nil, err
	}
	container := cfg.Container
	if container == nil {
		if container, err = ContainerTarGz(filepath.Join(cfg.BinDir, "pith-hello")); err != nil {
			return nil, err
		}
	}
	if cfg.StateDir, err = filepath.Abs(cfg.StateDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, err
	}
	// A fresh cluster every run: old nodes, tokens and releases go; the
	// SSH key and the next release's build (next/) stay.
	ents, _ := os.ReadDir(cfg.StateDir)
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "node") || n == "repo" || n == "discovery.json" || n == "discovery.json.lock" || n == "user-data" || n == vm.StateFile {
			if err := os.RemoveAll(filepath.Join(cfg.StateDir, n)); err != nil {
				return nil, err
			}
		}
	}
	life, stop := context.WithCancel(context.Background())
	return &Demo{cfg: cfg, life: life, stop: stop, base: m, Version: m.Version, Next: next,
		repo: filepath.Join(cfg.StateDir, "repo"), container: container, down: map[int]bool{}}, nil
}

// Close powers the nodes off and stops the host's servers.
func (d *Demo) Close() {
	if d.Cluster != nil {
		d.Cluster.Stop(15 * time.Second)
		os.Remove(filepath.Join(d.Cluster.Dir, vm.StateFile))
	}
	d.stopServers()
	d.stop()
}

// --- output --------------------------------------------------------------

func (d *Demo) heading(n int, title string) {
	fmt.Fprintf(d.cfg.Out, "\n=== %d. %s ===\n", n, title)
}

func (d *Demo) say(format string, a ...any) {
	fmt.Fprintf(d.cfg.Out, format+"\n", a...)
}

// transcript prints a command and its output as a terminal would.
func (d *Demo) transcript(where, cmd, out string) {
	fmt.Fprintf(d.cfg.Out, "%s$ %s\n", where, cmd)
	if out = strings.TrimRight(out, "\n"); out != "" {
		fmt.Fprintln(d.cfg.Out, "    "+strings.ReplaceAll(out, "\n", "\n    "))
	}
}

func (d *Demo) timed(step string, start time.Time) {
	took := time.Since(start)
	d.Times = append(d.Times, StepTime{Step: step, Took: took})
	d.say("(step took %s)", took.Round(time.Second))
}

func (d *Demo) stepCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(d.life, d.cfg.StepTimeout)
}

// --- nodes -------------------------------------------------------------

// NodeName is the i-th node's name (0-based).
func (d *Demo) NodeName(i int) string { return vm.NodeName(i) }

// Machine is the i-th node's current QEMU (a node switched back on gets a new one).
func (d *Demo) Machine(i int) *vm.Machine { return d.Cluster.Machines[i] }

// Exec runs cmd as core on node i: stdout, and an error for a transport
// failure or a non-zero exit (with stderr).
func (d *Demo) Exec(ctx context.Context, i int, cmd string) (string, error) {
	m := d.Machine(i)
	r, err := vm.RunSSH(ctx, m.Ports[22], vm.DefaultUser, d.Cluster.Key, cmd)
	if err != nil {
		return "", fmt.Errorf("%s: %s: %w", m.Config.Name, cmd, err)
	}
	out := strings.TrimSpace(string(r.Stdout))
	if r.ExitStatus != 0 {
		return out, fmt.Errorf("%s: %s: exit %d: %s", m.Config.Name, cmd, r.ExitStatus, strings.TrimSpace(out+"\n"+string(r.Stderr)))
	}
	return out, nil
}

// try is Exec bounded to a short time, for polls.
func (d *Demo) try(ctx context.Context, i int, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return d.Exec(ctx, i, cmd)
}

// show runs cmd on node i and prints it with its output.
func (d *Demo) show(ctx context.Context, i int, cmd string) (string, error) {
	out, err := d.Exec(ctx, i, cmd)
	if err != nil {
		return out, err
	}
	d.transcript("core@"+d.NodeName(i)+" ", cmd, out)
	return out, nil
}

// poll calls check every interval until it is done; the error names what
// never happened and the last thing check saw.
func poll(ctx context.Context, what string, interval time.Duration, check func() (bool, string)) (time.Duration, error) {
	start := time.Now()
	last := ""
	for {
		ok, desc := check()
		if ok {
			return time.Since(start), nil
		}
		last = desc
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s never happened (%v); last: %s", what, ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

// apiURL is node i's pithd client port as forwarded to 127.0.0.1.
func (d *Demo) apiURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", d.Machine(i).Ports[2379])
}

// stage names how far a node's boot got, from its console.
func stage(serialLog string) string {
	b, _ := vm.Console{Path: serialLog}.ReadFrom(0)
	s := string(b)
	for _, st := range []struct{ marker, name string }{
		{"login:", "login prompt"}, {"Welcome to", "systemd"}, {"pith-init", "initramfs"}, {"Loading Pith slot", "kernel"},
	} {
		if strings.Contains(s, st.marker) {
			return st.name
		}
	}
	return "firmware"
}

// --- step 1 ------------------------------------------------------------

// Discovery starts the discovery service and the channel server on the
// workstation, and makes a token for a cluster of Nodes members. Release N
// (the image's) is published to stable and N+1 is built in the background
// meanwhile, for step 6.
func (d *Demo) Discovery() (string, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	d.heading(1, "A discovery token")
	d.say(`A new cluster needs a way for its first machines to find each other. As with
CoreOS's discovery.etcd.io, each node is given one URL; the first %d to register
become the KV's voting members. Here the discovery service runs on this
workstation (pith discovery serve), as does the release channel server the
nodes update from (pith channel serve). Nodes reach both through QEMU's user
network at %s.`, d.cfg.Nodes, GuestHost)
	var err error
	d.discovery, err = d.startServer(ctx, "discovery", "/health", "discovery", "serve",
		"--advertise", GuestDiscoveryURL, "--state", filepath.Join(d.cfg.StateDir, "discovery.json"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(d.repo, 0o755); err != nil {
		return "", err
	}
	d.channel, err = d.startServer(ctx, "channel", "/", "channel", "serve", "--repo", d.repo)
	if err != nil {
		return "", err
	}
	d.transcript("", "pith "+strings.Join(d.discovery.args, " ")+" &", "")
	d.transcript("", "pith "+strings.Join(d.channel.args, " ")+" &", "")
	args := []string{"discovery", "new", "--size", fmt.Sprint(d.cfg.Nodes), "--server", "http://" + d.discovery.addr}
	out, err := d.runPith(ctx, args...)
	if err != nil {
		return "", err
	}
	d.DiscoveryURL = strings.TrimSpace(out)
	if !strings.HasPrefix(d.DiscoveryURL, GuestDiscoveryURL+"/") {
		return "", fmt.Errorf("pith discovery new printed %q, want a URL under %s", d.DiscoveryURL, GuestDiscoveryURL)
	}
	d.transcript("", "pith "+strings.Join(args, " "), d.DiscoveryURL)
	d.prep = make(chan error, 1)
	go func() { d.prep <- d.prepare() }()
	d.timed("discovery token", start)
	return d.DiscoveryURL, nil
}

// prepare publishes the image's release N on stable (the nodes run it, so
// they find nothing to do) and builds N+1 for step 6.
func (d *Demo) prepare() error {
	start := time.Now()
	if _, err := d.runPith(d.life, "release", "--channel", "stable", "--image", d.cfg.ImageDir, "--key", d.cfg.ReleaseKey, "--repo", d.repo); err != nil {
		return err
	}
	d.prepNote = fmt.Sprintf("%s published on stable in %s", d.Version, time.Since(start).Round(time.Second))
	start = time.Now()
	how, err := d.buildNext(d.life)
	d.prepNote += fmt.Sprintf("; %s %s in %s (pith build, warm cache)", d.Next, how, time.Since(start).Round(time.Second))
	return err
}

func (d *Demo) waitPrepared() error {
	d.prepOnce.Do(func() { d.prepErr = <-d.prep })
	return d.prepErr
}

// --- step 2 ------------------------------------------------------------

// BootResult is what step 2 measured, from each QEMU's start.
type BootResult struct {
	UserData string
	SSH      []time.Duration // to SSH accepting the key
	Formed   time.Duration   // to the KV having all members and a leader (from the first start)
	Members  string          // pithctl member list
}

// Boot writes the cloud-config and boots the nodes (pith boot --nodes N),
// showing their progress, copies the container image to each, and waits
// until the KV has formed and every machine joined the scheduler.
func (d *Demo) Boot() (BootResult, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	var res BootResult
	d.heading(2, fmt.Sprintf("Boot %d nodes from one cloud-config", d.cfg.Nodes))
	res.UserData = UserData(d.DiscoveryURL, d.cfg.Nodes)
	ud := filepath.Join(d.cfg.StateDir, "user-data")
	if err := os.WriteFile(ud, []byte(res.UserData), 0o644); err != nil {
		return res, err
	}
	d.say(`Every node gets the same user-data, as CoreOS machines did: the discovery URL,
$private_ipv4 for the addresses it advertises (each node fills in its own), the
update channel and the reboot strategy. This is %s:`, ud)
	fmt.Fprintln(d.cfg.Out, "    "+strings.ReplaceAll(strings.TrimRight(res.UserData, "\n"), "\n", "\n    "))
	d.say("Booting them as `pith boot --nodes %d --user-data %s --state %s` does (package vm),\nwith guestfwd rules for the two servers:", d.cfg.Nodes, ud, d.cfg.StateDir)
	d.say("%s", d.cfg.Accel.Notice())
	c, err := vm.StartCluster(d.life, vm.ClusterConfig{
		Dir: d.cfg.StateDir, Nodes: d.cfg.Nodes, Log: d.say,
		Node: vm.Config{
			Image: filepath.Join(d.cfg.ImageDir, "pith.qcow2"), UserData: ud, Accel: d.cfg.Accel,
			GuestFwd: []string{
				d.cfg.Relay(strings.TrimPrefix(GuestDiscoveryURL, "http://"), d.discovery.addr),
				d.cfg.Relay(strings.TrimSuffix(strings.TrimPrefix(GuestChannelURL, "http://"), "/"), d.channel.addr),
			},
		},
	})
	if err != nil {
		return res, err
	}
	d.Cluster = c
	first := c.Machines[0].Started

	// Each node: SSH up, then the container image copied in at once, so
	// dockerd's slow first start overlaps the rest.
	res.SSH = make([]time.Duration, d.cfg.Nodes)
	errs := make(chan error, d.cfg.Nodes)
	var mu sync.Mutex
	for i := range c.Machines {
		go func() {
			m := c.Machines[i]
			_, err := poll(ctx, m.Config.Name+" accepting SSH", 2*time.Second, func() (bool, string) {
				if !m.Running() {
					return true, ""
				}
				_, err := d.try(ctx, i, "true")
				return err == nil, fmt.Sprint(err)
			})
			if err == nil && !m.Running() {
				err = fmt.Errorf("%s: QEMU exited: %v (console: %s)", m.Config.Name, m.Err(), m.SerialLog)
			}
			if err == nil {
				mu.Lock()
				res.SSH[i] = time.Since(m.Started)
				mu.Unlock()
				err = d.copyContainer(ctx, i)
			}
			errs <- err
		}()
	}
	// Progress while they boot.
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	var bootErr error
	for left := d.cfg.Nodes; left > 0; {
		select {
		case err := <-errs:
			left--
			if err != nil && bootErr == nil {
				bootErr = err
			}
		case <-tick.C:
			var st []string
			mu.Lock()
			for i, m := range c.Machines {
				s := stage(m.SerialLog)
				if res.SSH[i] != 0 {
					s = "up (SSH)"
				}
				st = append(st, m.Config.Name+": "+s)
			}
			mu.Unlock()
			d.say("  [%s] %s", time.Since(first).Round(time.Second), strings.Join(st, ", "))
		}
	}
	if bootErr != nil {
		return res, bootErr
	}
	for i, t := range res.SSH {
		d.say("%s up: SSH %s after its QEMU started", d.NodeName(i), t.Round(time.Second))
	}

	d.say("\nThe nodes found each other through the token; waiting for the KV to have %d members and a leader...", d.cfg.Nodes)
	if _, err := poll(ctx, fmt.Sprintf("%d KV members with a leader", d.cfg.Nodes), 2*time.Second, func() (bool, string) {
		out, err := d.try(ctx, 0, "pithctl member list")
		res.Members = out
		return err == nil && strings.Count(out, "name=") == d.cfg.Nodes && strings.Count(out, "isLeader=true") == 1, out + fmt.Sprint(err)
	}); err != nil {
		return res, err
	}
	res.Formed = time.Since(first)
	d.say("cluster formed %s after the first QEMU started", res.Formed.Round(time.Second))
	d.MachineIDs = make([]string, d.cfg.Nodes)
	for i := range d.MachineIDs {
		id, err := d.Exec(ctx, i, "cat /etc/machine-id")
		if err != nil {
			return res, err
		}
		d.MachineIDs[i] = id
	}
	d.timed("boot", start)
	return res, nil
}

// copyContainer copies the image tarball to node i atomically (a path
// unit imports it the moment it appears).
func (d *Demo) copyContainer(ctx context.Context, i int) error {
	m := d.Machine(i)
	dir := filepath.Dir(ContainerTarball)
	r, err := vm.RunSSHInput(ctx, m.Ports[22], vm.DefaultUser, d.Cluster.Key,
		"sudo sh -c 'mkdir -p "+dir+" && cat > "+ContainerTarball+".tmp && mv "+ContainerTarball+".tmp "+ContainerTarball+"'",
		bytes.NewReader(d.container))
	if err == nil && r.ExitStatus != 0 {
		err = fmt.Errorf("exit %d: %s", r.ExitStatus, r.Stderr)
	}
	if err != nil {
		return fmt.Errorf("%s: copy the container image: %w", m.Config.Name, err)
	}
	return nil
}

// --- step 3 ------------------------------------------------------------

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
	if _, err := poll(ctx, fmt.Sprintf("%d machines in the scheduler", d.cfg.Nodes), 2*time.Second, func() (bool, string) {
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
	if _, err := poll(ctx, "/message on node2", time.Second, func() (bool, string) {
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

// --- step 4 ------------------------------------------------------------

// UnitRow is a line of pithctl list-units.
type UnitRow struct {
	Unit, Machine, IP, Active string
	Node                      int // index of the node with that IP, -1 if none
}

// ListUnits runs list-units on node i and parses it.
func (d *Demo) ListUnits(ctx context.Context, i int) ([]UnitRow, string, error) {
	out, err := d.try(ctx, i, "sudo pithctl list-units --no-legend --full --fields unit,machine,active")
	if err != nil {
		return nil, out, err
	}
	return parseUnits(out, d.cfg.Nodes), out, nil
}

func parseUnits(out string, nodes int) []UnitRow {
	var rows []UnitRow
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		r := UnitRow{Unit: f[0], Machine: f[1], Node: -1}
		if id, ip, ok := strings.Cut(f[1], "/"); ok {
			r.Machine, r.IP = id, ip
		}
		for n := 0; n < nodes; n++ {
			if privateIP(n) == r.IP {
				r.Node = n
			}
		}
		if len(f) > 2 {
			r.Active = f[2]
		}
		rows = append(rows, r)
	}
	return rows
}

// ScheduleResult is step 4's output.
type ScheduleResult struct {
	Units     []UnitRow
	ListUnits string         // pithctl list-units as printed
	Where     map[string]int // mongo@N.service -> node
	Global    map[int]bool   // nodes running announce.service
	Answers   map[string]string
	Announced string // pithctl kv ls /announce
}

// Schedule submits the mongo@ template and a global unit, starts mongo@1,
// mongo@2 and the global unit, and shows where they run.
func (d *Demo) Schedule() (ScheduleResult, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	res := ScheduleResult{Where: map[string]int{}, Global: map[int]bool{}, Answers: map[string]string{}}
	d.heading(4, "Schedule a service: the mongo@.service template")
	d.say(`A unit file is a systemd unit plus an [X-Fleet] section saying where it may run.
mongo@.service is a template: mongo@1 and mongo@2 are two instances of it.
Conflicts=mongo@*.service keeps two instances off the same machine. The
container image (a small HTTP server standing in for MongoDB) was loaded on
every node offline, with docker import.`)
	write := "mkdir -p units && cat > 'units/mongo@.service' <<'EOF'\n" + MongoUnit + "EOF\ncat > units/announce.service <<'EOF'\n" + AnnounceUnit + "EOF"
	if _, err := d.Exec(ctx, 0, write); err != nil {
		return res, err
	}
	if _, err := d.show(ctx, 0, "cat units/mongo@.service"); err != nil {
		return res, err
	}
	d.say("\nannounce.service has Global=true: it runs on every machine, and keeps a key with a TTL in the KV for its host:")
	if _, err := d.show(ctx, 0, "cat units/announce.service"); err != nil {
		return res, err
	}
	if _, err := d.show(ctx, 0, "cd units && sudo pithctl submit mongo@.service announce.service"); err != nil {
		return res, err
	}
	if _, err := d.show(ctx, 0, "sudo pithctl list-unit-files"); err != nil {
		return res, err
	}
	d.say("\npithctl start waits until the units are launched on their machines:")
	t0 := time.Now()
	if _, err := d.show(ctx, 0, "sudo pithctl start mongo@1 mongo@2 announce.service"); err != nil {
		return res, err
	}
	d.say("(launched %s after pithctl start)", time.Since(t0).Round(time.Second))
	want := 2 + d.cfg.Nodes
	if _, err := poll(ctx, "mongo@1, mongo@2 and announce.service active", 2*time.Second, func() (bool, string) {
		rows, out, err := d.ListUnits(ctx, 0)
		res.Units = rows
		active := 0
		for _, r := range rows {
			if r.Active == "active" {
				active++
			}
		}
		return err == nil && len(rows) == want && active == want, out + fmt.Sprint(err)
	}); err != nil {
		return res, err
	}
	var err error
	if res.ListUnits, err = d.show(ctx, 0, "sudo pithctl list-units"); err != nil {
		return res, err
	}
	for _, r := range res.Units {
		if r.Node < 0 {
			return res, fmt.Errorf("list-units: %s on %s/%s, which is none of the nodes", r.Unit, r.Machine, r.IP)
		}
		if r.Unit == "announce.service" {
			res.Global[r.Node] = true
		} else {
			res.Where[r.Unit] = r.Node
		}
	}
	d.say("\nEach instance answers on its machine (the container prints where it runs):")
	for _, u := range []string{"mongo@1", "mongo@2"} {
		n, ok := res.Where[u+".service"]
		if !ok {
			return res, fmt.Errorf("list-units has no %s.service", u)
		}
		ans, err := d.answer(ctx, n, u)
		if err != nil {
			return res, err
		}
		res.Answers[u] = ans
	}
	if _, err := poll(ctx, "every machine announced in /announce", 2*time.Second, func() (bool, string) {
		out, err := d.try(ctx, 0, "pithctl kv ls /announce")
		res.Announced = out
		return err == nil && len(strings.Split(out, "\n")) == d.cfg.Nodes, out + fmt.Sprint(err)
	}); err != nil {
		return res, err
	}
	d.transcript("core@"+d.NodeName(0)+" ", "pithctl kv ls /announce", res.Announced)
	d.timed("schedule", start)
	return res, nil
}

// answer waits until the container of instance inst (mongo@N) answers on
// node n's port 27017 and shows it.
func (d *Demo) answer(ctx context.Context, n int, inst string) (string, error) {
	const get = `bash -c 'exec 3<>/dev/tcp/127.0.0.1/27017 && printf "GET / HTTP/1.0\r\n\r\n" >&3 && sed "1,/^\r*$/d" <&3'`
	want := inst + " on " + d.NodeName(n)
	var got string
	if _, err := poll(ctx, inst+" answering on "+d.NodeName(n), 2*time.Second, func() (bool, string) {
		out, err := d.try(ctx, n, get)
		got = out
		return err == nil && out == want, out + fmt.Sprint(err)
	}); err != nil {
		return got, err
	}
	d.transcript("core@"+d.NodeName(n)+" ", get, got)
	return got, nil
}

// --- step 5 ------------------------------------------------------------

// FailoverResult is step 5's output.
type FailoverResult struct {
	From, To  int           // node that was switched off, node mongo@1 moved to
	Took      time.Duration // switch-off -> list-units shows mongo@1 active elsewhere
	Answering time.Duration // switch-off -> its container answers there
	ListUnits string
	Answer    string
	Message   string // /message read on the new node afterwards
}

// Failover switches off the machine running mongo@1 (QEMU quits: a power
// cut) and waits until the scheduler has started mongo@1 on another one.
func (d *Demo) Failover(sched ScheduleResult) (FailoverResult, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	var res FailoverResult
	from, ok := sched.Where["mongo@1.service"]
	if !ok {
		return res, errors.New("failover: mongo@1 was not scheduled")
	}
	res.From, res.To = from, -1
	watch := (from + 1) % d.cfg.Nodes // any node that stays up
	d.heading(5, "Failover: switch off the machine running mongo@1")
	d.say(`Every pithd sends heartbeats to the scheduler's leader; a machine silent for the
agent TTL (5 s) is dead, and its units are placed on the machines left.
Conflicts leaves mongo@1 only the machine not running mongo@2.
Switching off %s (QEMU quits: no clean shutdown)...`, d.NodeName(from))
	m := d.Machine(from)
	killed := time.Now()
	if err := m.QMP("quit"); err != nil {
		m.Kill()
	}
	<-m.Done()
	d.down[from] = true
	_, err := poll(ctx, "mongo@1 rescheduled and active", time.Second, func() (bool, string) {
		rows, o, err := d.ListUnits(ctx, watch)
		for _, r := range rows {
			if r.Unit == "mongo@1.service" && r.Node >= 0 && r.Node != from && r.Active == "active" {
				res.To = r.Node
				return err == nil, o
			}
		}
		return false, o + fmt.Sprint(err)
	})
	if err != nil {
		return res, err
	}
	res.Took = time.Since(killed)
	d.say("mongo@1 is active on %s %s after %s was switched off:", d.NodeName(res.To), res.Took.Round(100*time.Millisecond), d.NodeName(from))
	if res.ListUnits, err = d.show(ctx, watch, "sudo pithctl list-units"); err != nil {
		return res, err
	}
	if res.Answer, err = d.answer(ctx, res.To, "mongo@1"); err != nil {
		return res, err
	}
	res.Answering = time.Since(killed)
	d.say("(its container answered %s after the switch-off)", res.Answering.Round(100*time.Millisecond))
	d.say("\nThe KV lost one of three members and still has a quorum:")
	if res.Message, err = d.show(ctx, res.To, "pithctl kv get /message"); err != nil {
		return res, err
	}
	d.timed("failover", start)
	return res, nil
}

// --- step 6 ------------------------------------------------------------

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
	_, err = poll(ctx, "every node on "+d.Next, 2*time.Second, func() (bool, string) {
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
	if _, err := poll(ctx, "mongo@1, mongo@2 and announce.service on every machine active after the updates", 2*time.Second, func() (bool, string) {
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

// --- step 7 ------------------------------------------------------------

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
