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
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pith-os/pith/internal/poll"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/vm"
)

// Config is what the walkthrough needs from the workstation.
type Config struct {
	ImageDir   string // make image's output: pith.qcow2, pith.img, pith.manifest.json
	BinDir     string // pith, pithctl and pith-hello for this host (make bin)
	CacheDir   string // pith build's cache; the next release is built from it
	ReleaseKey string // private release key whose public half the image trusts
	// SecureBootKeys is the pith keygen --secure-boot directory a signed
	// image (make image's) was built with: the next release is signed
	// with it too, or the nodes would refuse it. Unused for an unsigned image.
	SecureBootKeys string
	StateDir       string // nodes, release repository, servers' logs (created)
	Nodes          int    // default 3
	Accel          vm.Accel
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
	// secureBoot: the image is signed, so its nodes boot as pith boot
	// boots it by default, UEFI with Secure Boot on and these enrolled.
	secureBoot *vm.SecureBootCerts

	Cluster      *vm.Cluster
	DiscoveryURL string // as the nodes see it
	Version      string // the image's release
	Next         string // the release step 6 publishes
	MachineIDs   []string
	Times        []StepTime

	discovery, channel *server
	client             *http.Client // the workstation's, to the nodes' forwarded API ports
	repo               string
	container          []byte
	prep               chan error // release N and the build of N+1, in the background
	prepOnce           sync.Once
	prepErr            error
	prepNote           string       // what prepare did, how long it took
	down               map[int]bool // nodes switched off
	restarts           int
	// ssh keeps one connection per node for Exec: the walkthrough's
	// polls would otherwise log in again every few seconds.
	ssh vm.SSHPool
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
	sb, err := secureBootCerts(cfg, m)
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
	// A fresh cluster every run: old nodes, tokens, CA and releases go;
	// the SSH key and the next release's build (next/) stay.
	ents, _ := os.ReadDir(cfg.StateDir)
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "node") || n == "repo" || n == "discovery.json" || n == "discovery.json.lock" || strings.HasPrefix(n, "user-data") || n == "cluster" || n == vm.StateFile {
			if err := os.RemoveAll(filepath.Join(cfg.StateDir, n)); err != nil {
				return nil, err
			}
		}
	}
	life, stop := context.WithCancel(context.Background())
	return &Demo{cfg: cfg, life: life, stop: stop, base: m, secureBoot: sb, Version: m.Version, Next: next,
		repo: filepath.Join(cfg.StateDir, "repo"), container: container, down: map[int]bool{}, client: http.DefaultClient}, nil
}

// Close powers the nodes off and stops the host's servers.
func (d *Demo) Close() {
	d.ssh.Close()
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
	r, err := d.ssh.Run(ctx, m.Ports[22], vm.DefaultUser, d.Cluster.Key, cmd)
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

// waitFor calls check every interval until it is done (internal/poll);
// the error names what never happened and the last thing check saw.
func waitFor(ctx context.Context, what string, interval time.Duration, check func() (bool, string)) (time.Duration, error) {
	return poll.Until(ctx, what, interval, check, nil)
}

// APIURL is node i's pithd client port as forwarded to 127.0.0.1: mutual
// TLS (its member certificate names 127.0.0.1).
func (d *Demo) APIURL(i int) string {
	return fmt.Sprintf("https://127.0.0.1:%d", d.Machine(i).Ports[2379])
}

func (d *Demo) apiURL(i int) string { return d.APIURL(i) }

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

// secureBootCerts are the certificates a signed image's nodes enroll (pith
// build wrote them beside the image), checked against the image's manifest
// as are those of cfg.SecureBootKeys, which sign its next release. nil for
// an unsigned image.
func secureBootCerts(cfg Config, m *manifest.Manifest) (*vm.SecureBootCerts, error) {
	if m.SecureBoot == nil {
		return nil, nil
	}
	certs, err := vm.LoadSecureBootCerts(cfg.ImageDir, vm.SecureBootCertPrefix)
	if err == nil {
		err = certs.CheckAgainst(m.SecureBoot.Certs)
	}
	if err != nil {
		return nil, fmt.Errorf("%s is signed for Secure Boot: %w", cfg.ImageDir, err)
	}
	if cfg.SecureBootKeys == "" {
		return nil, fmt.Errorf("%s is signed for Secure Boot: its next release needs the same keys (--secure-boot-keys DIR; make image's are CACHE/secure-boot-keys)", cfg.ImageDir)
	}
	keys, err := vm.LoadSecureBootCerts(cfg.SecureBootKeys, "")
	if err == nil {
		err = keys.CheckAgainst(m.SecureBoot.Certs)
	}
	if err != nil {
		return nil, fmt.Errorf("secure boot keys %s, for %s's next release: %w", cfg.SecureBootKeys, cfg.ImageDir, err)
	}
	return certs, nil
}
