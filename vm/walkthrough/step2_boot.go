package walkthrough

// Step 2: boot the nodes from one cloud-config.

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/vm"
)

// BootResult is what step 2 measured, from each QEMU's start.
type BootResult struct {
	UserData      []string // each node's, with its member certificate and key
	UserDataFiles []string
	SSH           []time.Duration // to SSH accepting the key
	Formed        time.Duration   // to the KV having all members and a leader (from the first start)
	Members       string          // pithctl member list
}

// Boot writes the cloud-config and boots the nodes (pith boot --nodes N),
// showing their progress, copies the container image to each, and waits
// until the KV has formed and every machine joined the scheduler.
func (d *Demo) Boot() (BootResult, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	var res BootResult
	d.heading(2, fmt.Sprintf("Boot %d nodes: one cloud-config, a certificate each", d.cfg.Nodes))
	d.say(`Each node needs its own member certificate, naming the addresses peers and
clients dial it by (its private address; loopback is always in). pith cluster
issue prints it with its key and the CA as cloud-config lines, here into files
made 0600 first (the key is in them; --out FILE does the same):`)
	if err := d.writeUserData(ctx, &res); err != nil {
		return res, err
	}
	d.say(`
Every node's user-data is otherwise the same, as CoreOS machines had: the
discovery URL, $private_ipv4 for the addresses it advertises (each node fills
in its own), https:// for the KV's ports, the update channel and the reboot
strategy. This is %s (PEM bodies cut):`, res.UserDataFiles[0])
	fmt.Fprintln(d.cfg.Out, "    "+strings.ReplaceAll(strings.TrimRight(elidePEM(res.UserData[0]), "\n"), "\n", "\n    "))
	d.say("Booting them as `pith boot --nodes %d --user-data FILE --state %s` does (package vm),\nwith guestfwd rules for the two servers:", d.cfg.Nodes, d.cfg.StateDir)
	d.say("%s", d.cfg.Accel.Notice())
	firmware := vm.BIOS
	if d.secureBoot != nil {
		firmware = vm.UEFI
		d.say("The image's boot chain is signed (its manifest says so), so the nodes boot as `pith boot` boots it:\nUEFI with Secure Boot enforced and the image's PK, KEK and db enrolled.")
	}
	c, err := vm.StartCluster(d.life, vm.ClusterConfig{
		Dir: d.cfg.StateDir, Nodes: d.cfg.Nodes, Log: d.say, UserData: res.UserDataFiles,
		Node: vm.Config{
			Image: filepath.Join(d.cfg.ImageDir, "pith.qcow2"), Accel: d.cfg.Accel,
			Firmware: firmware, SecureBoot: d.secureBoot,
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

	if err := d.waitUp(ctx, &res); err != nil {
		return res, err
	}
	for i, t := range res.SSH {
		d.say("%s up: SSH %s after its QEMU started", d.NodeName(i), t.Round(time.Second))
	}

	d.say("\nThe nodes found each other through the token; waiting for the KV to have %d members and a leader...", d.cfg.Nodes)
	if _, err := waitFor(ctx, fmt.Sprintf("%d KV members with a leader, each serving clients", d.cfg.Nodes), 2*time.Second, func() (bool, string) {
		out, err := d.try(ctx, 0, "sudo pithctl member list")
		res.Members = out
		// A member that joined lists its client URLs only once it has
		// published them (through the log, as etcd does): until then it
		// is in the cluster but not yet serving.
		serving := len(clientURLsRE.FindAllString(out, -1))
		return err == nil && strings.Count(out, "name=") == d.cfg.Nodes && serving == d.cfg.Nodes && strings.Count(out, "isLeader=true") == 1, out + fmt.Sprint(err)
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

// clientURLsRE matches a member list line's published client URLs.
var clientURLsRE = regexp.MustCompile(`clientURLs=\S`)

// writeUserData issues each node's member certificate and writes its
// user-data.
func (d *Demo) writeUserData(ctx context.Context, res *BootResult) error {
	// 0600: each names the discovery token and the node's member key.
	for i := range d.cfg.Nodes {
		m, err := d.issueMember(ctx, i)
		if err != nil {
			return err
		}
		ud := filepath.Join(d.cfg.StateDir, "user-data-"+d.NodeName(i))
		text := UserData(d.DiscoveryURL, d.cfg.Nodes, m)
		if err := atomicfile.WriteFile(ud, []byte(text), 0o600); err != nil {
			return err
		}
		res.UserData = append(res.UserData, text)
		res.UserDataFiles = append(res.UserDataFiles, ud)
	}
	return nil
}

// waitUp waits until every node accepts SSH and has the container image,
// showing each node's boot stage meanwhile.
func (d *Demo) waitUp(ctx context.Context, res *BootResult) error {
	c := d.Cluster
	first := c.Machines[0].Started
	// Each node: SSH up, then the container image copied in at once, so
	// dockerd's slow first start overlaps the rest.
	res.SSH = make([]time.Duration, d.cfg.Nodes)
	errs := make(chan error, d.cfg.Nodes)
	var mu sync.Mutex
	for i := range c.Machines {
		go func() {
			m := c.Machines[i]
			_, err := waitFor(ctx, m.Config.Name+" accepting SSH", 2*time.Second, func() (bool, string) {
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
	return bootErr
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
