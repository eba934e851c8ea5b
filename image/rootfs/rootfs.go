// Package rootfs builds the tree that becomes Pith's read-only /usr: a Debian
// root filesystem made by mmdebstrap (merged-/usr), the kernel and its
// modules from Debian's kernel package, Pith's agent binaries and units, and
// the /etc and /var defaults moved under /usr/share/pith, since a machine's
// writable root starts empty.
//
// Two caches under CacheDir keep rebuilds fast and offline: every .deb and
// the apt lists (debian/), and the finished Debian tree as a tarball keyed by
// the Debian inputs (rootfs/), so a warm build does not run mmdebstrap.
package rootfs

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pith-os/pith/image/config"
)

// Options are the inputs of Build.
type Options struct {
	Config      config.Config
	CacheDir    string // downloads and finished trees (e.g. ~/.cache/pith)
	WorkDir     string // scratch space; Build replaces WorkDir/rootfs
	AgentBinDir string // holds static pithd and pithctl
	Log         func(format string, args ...any)
}

// Result names what Build made; all paths are inside WorkDir.
type Result struct {
	UsrDir        string // tree that becomes the USR filesystem root (= contents of /usr)
	KernelPath    string // vmlinuz extracted from the kernel .deb
	KernelVersion string // e.g. 6.1.0-28-cloud-amd64
	ModulesDir    string // UsrDir/lib/modules/<KernelVersion> (with modules.dep)
}

// Build makes the USR tree for opts.Config. It needs root: mmdebstrap's root
// mode keeps owners, device nodes, setuid bits and file capabilities.
func Build(ctx context.Context, opts Options) (*Result, error) {
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.WorkDir == "" || opts.CacheDir == "" {
		return nil, errors.New("rootfs: WorkDir and CacheDir must be set")
	}
	agents, err := findAgents(opts.AgentBinDir)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("building the root filesystem needs root (mmdebstrap keeps owners, devices and capabilities): run pith build as root, e.g. with sudo")
	}
	work, err := filepath.Abs(opts.WorkDir)
	if err != nil {
		return nil, err
	}
	cache, err := filepath.Abs(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	root := filepath.Join(work, "rootfs")
	if err := safeRemoveAll(root); err != nil {
		return nil, err
	}

	start := time.Now()
	key := debianKey(cfg)
	tarball := filepath.Join(cache, "rootfs", "debian-"+key[:24]+".tar.zst")
	if _, err := os.Stat(tarball); err == nil {
		logf("rootfs: cached Debian tree %s (%s)", filepath.Base(tarball), humanSize(fileSize(tarball)))
		if err := untar(ctx, tarball, root); err != nil {
			_ = safeRemoveAll(root)
			return nil, err
		}
		logf("rootfs: extracted in %s", time.Since(start).Round(100*time.Millisecond))
	} else {
		if err := debootstrap(ctx, cfg, cache, work, root, logf); err != nil {
			return nil, err
		}
		logf("rootfs: mmdebstrap done in %s", time.Since(start).Round(100*time.Millisecond))
		t0 := time.Now()
		if err := saveTar(ctx, root, tarball); err != nil {
			return nil, err
		}
		pruneTarballs(filepath.Dir(tarball), tarball, 2)
		logf("rootfs: cached Debian tree as %s (%s) in %s", filepath.Base(tarball), humanSize(fileSize(tarball)), time.Since(t0).Round(100*time.Millisecond))
	}

	t0 := time.Now()
	res, err := customize(root, cfg, agents)
	if err != nil {
		return nil, err
	}
	size, err := clampTimes(root, cfg.Epoch, filepath.Join(root, "usr"))
	if err != nil {
		return nil, err
	}
	logf("rootfs: /usr ready: %s, kernel %s, in %s", humanSize(size), res.KernelVersion, time.Since(t0).Round(100*time.Millisecond))
	return res, nil
}

// agentBins are the binaries the image carries, from AgentBinDir.
var agentBins = []string{"pithd", "pithctl"}

// findAgents checks that AgentBinDir holds static pithd and pithctl: the
// image has no Go runtime libraries to satisfy a dynamic one.
func findAgents(dir string) (map[string]string, error) {
	if dir == "" {
		return nil, errors.New("no agent binary directory: pass the directory holding pithd and pithctl (make bin builds them into _out/bin)")
	}
	out := map[string]string{}
	for _, name := range agentBins {
		p := filepath.Join(dir, name)
		f, err := elf.Open(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%s is missing: run make bin (it builds pith, pithd and pithctl into _out/bin)", p)
			}
			return nil, fmt.Errorf("%s is not a Linux executable (%v): run make bin", p, err)
		}
		interp := false
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				interp = true
			}
		}
		machine := f.Machine
		f.Close()
		if interp {
			return nil, fmt.Errorf("%s is dynamically linked: build it static with CGO_ENABLED=0 (make bin does)", p)
		}
		if machine != elf.EM_X86_64 {
			return nil, fmt.Errorf("%s is built for %v, the image is amd64: build with GOARCH=amd64 (make bin)", p, machine)
		}
		out[name] = p
	}
	return out, nil
}
