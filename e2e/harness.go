package e2e

// A small VM test harness in the spirit of Flatcar's kola: boot the built
// image under QEMU (BIOS or UEFI, 1..N nodes, each on its own copy-on-write
// overlay), wait for console markers, run commands over SSH with a key made
// for the run, dump the serial logs when a test fails, and always stop QEMU.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/vm"
)

// LoginMarker is the serial getty's prompt: the node reached multi-user.
const LoginMarker = "login:"

// bootImagePath returns the qcow2 built by `make image` (PITH_E2E_IMAGE_DIR).
func bootImagePath(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PITH_E2E_IMAGE_DIR")
	if dir == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("PITH_E2E_IMAGE_DIR is not set: CI must run the VM tests through `make e2e`")
		}
		t.Skip("PITH_E2E_IMAGE_DIR is not set: run `make e2e` (it builds the image with `make image` first)")
	}
	img := filepath.Join(dir, "pith.qcow2")
	if _, err := os.Stat(img); err != nil {
		t.Fatalf("image missing: %v (run `make image`)", err)
	}
	return img
}

var (
	accelOnce sync.Once
	accel     vm.Accel
)

// testAccel probes KVM once per test binary and logs the choice.
func testAccel(t *testing.T) vm.Accel {
	accelOnce.Do(func() { accel = vm.ProbeAccel(context.Background(), "qemu-system-x86_64") })
	t.Log(accel.Notice())
	return accel
}

// BootTimeout is the safety net for one wait on a boot step: generous, so a
// slow shared machine under TCG never fails a test that would pass; reaching
// it fails the test with the serial log attached.
func BootTimeout(a vm.Accel) time.Duration {
	if a.Name == "kvm" {
		return 5 * time.Minute
	}
	return 40 * time.Minute
}

// Options describe the machines of one test.
type Options struct {
	Nodes     int    // default 1
	Firmware  string // vm.BIOS (default) or vm.UEFI
	MemoryMiB int    // default 1024
	DiskSize  int64  // overlay size; 0 = the image's
	UserData  string // file; default an empty cloud-config
	// NoUserData boots with no fw_cfg user-data (vm.Config.NoUserData).
	NoUserData bool
	// SecureBoot, with Firmware vm.UEFI, enforces UEFI Secure Boot with
	// these certificates enrolled (vm.Config.SecureBoot).
	SecureBoot *vm.SecureBootCerts
	// TPM attaches a software TPM 2.0 (vm.Config.TPM).
	TPM bool
	// Image is the base disk; default the built pith.qcow2. A disk of an
	// earlier QEMU continues that machine.
	Image string
	// GuestFwd are QEMU guestfwd rules on the user network.
	GuestFwd []string
	// UserNet is the user network's range (vm.Config.UserNet); default QEMU's.
	UserNet string
	// KeyFrom reuses an earlier cluster's SSH key pair, so a continued
	// machine accepts the key it was given on its first boot.
	KeyFrom *vm.Cluster
	// FwCfg are more fw_cfg entries (name -> file) for these QEMU launches
	// only, e.g. a crash point (crashpointFwCfg).
	FwCfg map[string]string
	// CDROM is an ISO attached as a CD-ROM (the live pith.iso).
	CDROM string
	// ExtraDisks are raw disk files attached after the boot disk (vdb...).
	ExtraDisks []string
	// Arch is the guest's architecture (vm.Config.Arch); default amd64.
	Arch string
	// Netboot boots the machine over PXE (vm.Config.Netboot), without a
	// disk unless Image is set.
	Netboot *vm.Netboot
}

// Cluster is the machines of one test.
type Cluster struct {
	t     *testing.T
	VM    *vm.Cluster
	Nodes []*Node
	Accel vm.Accel
	// ssh keeps one connection per node for Exec and Run: a login costs
	// the guest over a second of CPU under TCG. WaitSSH still logs in
	// afresh.
	ssh      vm.SSHPool
	stopOnce sync.Once
}

// PowerOff stops the machines now, before the test ends, e.g. to give
// their VM slots to another test (FewerVMs); their serial logs stay for
// the dump a failed test ends with.
func (c *Cluster) PowerOff() {
	c.stopOnce.Do(func() {
		c.ssh.Close()
		if c.VM != nil {
			c.VM.Stop(0)
		}
	})
}

// Node is one machine: its QEMU, console position and SSH access.
type Node struct {
	t       *testing.T
	c       *Cluster
	M       *vm.Machine
	Name    string
	offset  int64 // console offset the next wait starts from
	Started time.Time
}

// Boot starts the machines in a temporary state directory. They are stopped
// when the test ends, after their serial logs were dumped if it failed.
// The test must hold VM slots for them (NeedVMs).
func Boot(t *testing.T, o Options) *Cluster {
	t.Helper()
	img := o.Image
	if img == "" && o.Netboot == nil {
		img = bootImagePath(t)
	}
	if o.Nodes == 0 {
		o.Nodes = 1
	}
	checkGuests(t, o.Nodes)
	a := testAccel(t)
	// Short path: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "pith-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Accel: a}
	t.Cleanup(func() {
		if c.VM != nil && t.Failed() {
			c.DumpLogs()
		}
		c.PowerOff()
		if t.Failed() && os.Getenv("PITH_E2E_KEEP") != "" {
			t.Logf("state kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	node := vm.Config{Image: img, Firmware: o.Firmware, MemoryMiB: o.MemoryMiB, DiskSize: o.DiskSize, UserData: o.UserData, Accel: a, GuestFwd: o.GuestFwd, UserNet: o.UserNet, FwCfg: o.FwCfg, CDROM: o.CDROM, ExtraDisks: o.ExtraDisks, Arch: o.Arch, Netboot: o.Netboot}
	if k := o.KeyFrom; k != nil {
		node.SSHKey = k.PubKey
		for _, f := range []string{vm.KeyFile, vm.KeyFile + ".pub"} {
			b, err := os.ReadFile(filepath.Join(k.Dir, f))
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, f), b, 0o600)
			}
			if err != nil {
				t.Fatalf("reusing the SSH key of %s: %v", k.Dir, err)
			}
		}
	}
	node.SecureBoot, node.TPM = o.SecureBoot, o.TPM
	node.NoUserData = o.NoUserData
	cv, err := vm.StartCluster(context.Background(), vm.ClusterConfig{Dir: dir, Nodes: o.Nodes, Log: t.Logf, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	c.VM = cv
	for _, m := range cv.Machines {
		c.Nodes = append(c.Nodes, &Node{t: t, c: c, M: m, Name: m.Config.Name, Started: m.Started})
	}
	trackGuests(t, c)
	return c
}

// DumpLogs logs every node's serial console (the tail of long ones) and
// where the full file is.
func (c *Cluster) DumpLogs() {
	for _, n := range c.Nodes {
		b, _ := vm.Console{Path: n.M.SerialLog}.ReadFrom(0)
		const max = 64 << 10
		cut := ""
		if len(b) > max {
			b, cut = b[len(b)-max:], " (last 64 KiB)"
		}
		c.t.Logf("===== %s serial console%s, %s =====\n%s\n===== end of %s console =====", n.Name, cut, n.M.SerialLog, b, n.Name)
		if err := n.M.Err(); err != nil {
			c.t.Logf("%s: %v", n.Name, err)
		}
	}
}

// ctx is a context bounded by the safety timeout.
func (n *Node) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), BootTimeout(n.c.Accel))
}

// BootStopped is what pith-init prints (initramfs/init/run.go) when it
// stops a boot for good and waits for the operator: the machine will not
// reach any marker after it.
const BootStopped = "pith-init: the boot stops here"

// WaitConsole waits until one of markers appears on the console after the
// previous wait's match, and returns the marker and the time since QEMU
// started. It fails the test (log attached by the cleanup) on timeout, if
// QEMU exits, or at once if pith-init stops the boot (unless BootStopped is
// one of markers), instead of waiting out BootTimeout.
func (n *Node) WaitConsole(markers ...string) (string, time.Duration) {
	n.t.Helper()
	ctx, cancel := n.ctx()
	defer cancel()
	watch := markers
	if !slices.Contains(markers, BootStopped) {
		watch = append(slices.Clip(markers), BootStopped)
	}
	off, m, err := vm.Console{Path: n.M.SerialLog}.WaitFor(ctx, n.offset, n.M.Done(), nil, watch...)
	if err != nil {
		n.t.Fatalf("%s: %v", n.Name, err)
	}
	n.offset = off
	if m == BootStopped && !slices.Contains(markers, BootStopped) {
		n.t.Fatalf("%s: %q on the console while waiting for %q", n.Name, BootStopped, markers)
	}
	return m, time.Since(n.Started)
}

// MarkConsole makes the next WaitConsole look only at what is written from now on.
func (n *Node) MarkConsole() { n.offset = vm.Console{Path: n.M.SerialLog}.Size() }

// ConsoleText returns the whole console log (every boot of this QEMU).
func (n *Node) ConsoleText() string {
	b, _ := vm.Console{Path: n.M.SerialLog}.ReadFrom(0)
	return string(b)
}

// WaitSSH retries until sshd accepts the run's key (first boot makes host
// keys and applies the user-data's keys, which can trail the login prompt).
func (n *Node) WaitSSH() {
	n.t.Helper()
	ctx, cancel := n.ctx()
	defer cancel()
	var last error
	for ctx.Err() == nil {
		r, err := vm.RunSSH(ctx, n.M.Ports[22], vm.DefaultUser, n.c.VM.Key, "true")
		if err == nil && r.ExitStatus == 0 {
			n.c.ssh.Forget(n.M.Ports[22]) // a connection to the boot before
			return
		}
		last = err
		select {
		case <-n.M.Done():
			n.t.Fatalf("%s: QEMU exited while waiting for SSH: %v", n.Name, n.M.Err())
		case <-time.After(2 * time.Second):
		}
	}
	n.t.Fatalf("%s: SSH as %s on 127.0.0.1:%d never worked: %v", n.Name, vm.DefaultUser, n.M.Ports[22], last)
}

// Exec runs a shell command as user core and returns its result; transport
// errors fail the test.
func (n *Node) Exec(cmd string) vm.SSHResult {
	n.t.Helper()
	ctx, cancel := n.ctx()
	defer cancel()
	r, err := n.c.ssh.Run(ctx, n.M.Ports[22], vm.DefaultUser, n.c.VM.Key, cmd)
	if err != nil {
		n.t.Fatalf("%s: ssh %q: %v", n.Name, cmd, err)
	}
	return r
}

// RunInput runs a command that must succeed with stdin read from in.
func (n *Node) RunInput(cmd string, in io.Reader) string {
	n.t.Helper()
	ctx, cancel := n.ctx()
	defer cancel()
	r, err := n.c.ssh.RunInput(ctx, n.M.Ports[22], vm.DefaultUser, n.c.VM.Key, cmd, in)
	if err != nil {
		n.t.Fatalf("%s: ssh %q: %v", n.Name, cmd, err)
	}
	if r.ExitStatus != 0 {
		n.t.Fatalf("%s: %q exited %d\nstdout: %s\nstderr: %s", n.Name, cmd, r.ExitStatus, r.Stdout, r.Stderr)
	}
	return strings.TrimSpace(string(r.Stdout))
}

// Run runs a command that must succeed and returns its trimmed stdout.
func (n *Node) Run(cmd string) string {
	n.t.Helper()
	r := n.Exec(cmd)
	if r.ExitStatus != 0 {
		n.t.Fatalf("%s: %q exited %d\nstdout: %s\nstderr: %s", n.Name, cmd, r.ExitStatus, r.Stdout, r.Stderr)
	}
	return strings.TrimSpace(string(r.Stdout))
}

// Reboot asks the guest to reboot and waits for the next login prompt.
// The SSH session may be cut by the reboot: its error is expected.
func (n *Node) Reboot() time.Duration {
	n.t.Helper()
	n.MarkConsole()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	vm.RunSSH(ctx, n.M.Ports[22], vm.DefaultUser, n.c.VM.Key, "sudo systemctl reboot")
	cancel()
	n.c.ssh.Forget(n.M.Ports[22])
	n.WaitConsole(LoginMarker)
	return time.Since(start)
}

// Up waits for the login prompt, then SSH, and returns the time from QEMU's
// start to the prompt.
func (n *Node) Up() time.Duration {
	n.t.Helper()
	_, d := n.WaitConsole(LoginMarker)
	n.WaitSSH()
	return d
}

// Since is the time since this node's QEMU started.
func (n *Node) Since() time.Duration { return time.Since(n.Started) }

func (n *Node) String() string { return fmt.Sprintf("%s(pid %d)", n.Name, n.M.PID()) }
