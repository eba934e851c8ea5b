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
	"slices"
	"strings"
	"time"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/sbom"
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
	// Packages are the Debian packages installed (dpkg's status), sorted by
	// name; Kernel is the package the kernel was extracted from.
	Packages []Package
	Kernel   Package
	// Lists are the apt indexes the tree was installed from.
	Lists apt.Lists
	// Grub is the GRUB the UEFI boot file is made with (FetchGrub): 2.12
	// or later for amd64, the architecture's own for a foreign one.
	Grub bootloader.Grub
	// BootLoaders are the GRUB packages of each boot path (BootLoaders).
	BootLoaders []sbom.BootLoader
}

// Package is one Debian package in the image.
type Package struct {
	Name, Version, Arch   string
	Source, SourceVersion string
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
	agents, err := findAgents(opts.AgentBinDir, cfg.Arch)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("building the root filesystem needs root (mmdebstrap keeps owners, devices and capabilities): run pith build as root, e.g. with sudo")
	}
	// A cached foreign tree is customized under qemu-user too (chroot).
	if _, err := foreignArchArgs(cfg.Arch); err != nil {
		return nil, err
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

	lists := apt.ListsFor(cache, cfg.Archives(), cfg.Arch)
	digest, err := refreshLists(ctx, lists, work, logf)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	key := debianKey(cfg, digest)
	tarball := filepath.Join(cache, "rootfs", "debian-"+key[:24]+".tar.zst")
	if _, err := os.Stat(tarball); err == nil {
		logf("rootfs: cached Debian tree %s (%s)", filepath.Base(tarball), humanSize(fileSize(tarball)))
		if err := untar(ctx, tarball, root); err != nil {
			_ = safeRemoveAll(root)
			return nil, err
		}
		logf("rootfs: extracted in %s", time.Since(start).Round(100*time.Millisecond))
	} else {
		if err := debootstrap(ctx, cfg, lists, cache, work, root, logf); err != nil {
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
	res.Lists = lists
	var fetched []apt.Candidate
	if res.Grub, fetched, err = FetchGrub(ctx, lists, cache, work, logf); err != nil {
		return nil, err
	}
	if res.BootLoaders, err = BootLoaders(ctx, cfg.Arch, res.Grub, fetched); err != nil {
		return nil, err
	}
	size, err := clampTimes(root, cfg.Epoch, filepath.Join(root, "usr"))
	if err != nil {
		return nil, err
	}
	logf("rootfs: /usr ready: %s, kernel %s, in %s", humanSize(size), res.KernelVersion, time.Since(t0).Round(100*time.Millisecond))
	return res, nil
}

// refreshLists brings the archives' apt indexes up to date and returns
// their digest. Without the network, lists fetched before are used (the
// build then installs what the archives offered then, and says so).
func refreshLists(ctx context.Context, lists apt.Lists, work string, logf func(string, ...any)) (string, error) {
	t0 := time.Now()
	// Builds sharing a cache (the VM tests run several at once) take turns.
	unlock, err := lists.Lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	ferr := lists.Fetch(ctx, work)
	if ctx.Err() != nil {
		return "", fmt.Errorf("rootfs: interrupted: %w", ctx.Err())
	}
	digest, err := lists.Digest()
	switch {
	case ferr == nil && err == nil:
		// preflight trusts lists this recent to reject unknown packages.
		_ = os.WriteFile(filepath.Join(lists.Dir, ".fetched"), nil, 0o644)
		logf("rootfs: apt indexes of %d archives up to date in %s (state %s)", len(lists.Archives), time.Since(t0).Round(100*time.Millisecond), digest[:12])
		return digest, nil
	case err == nil:
		when := "an earlier build"
		if fi, err := os.Stat(filepath.Join(lists.Dir, ".fetched")); err == nil {
			when = fi.ModTime().UTC().Format("2006-01-02 15:04Z")
		}
		logf("rootfs: WARNING: cannot refresh the apt indexes (%v): installing what the archives offered at %s", ferr, when)
		return digest, nil
	case ferr != nil:
		var uris []string
		for _, a := range lists.Archives {
			if !slices.Contains(uris, a.URI) {
				uris = append(uris, a.URI)
			}
		}
		return "", fmt.Errorf("debian.mirror: cannot download from %s (%v): check the URLs (debian.mirror, debian.security_mirror) and the network, or use %s", strings.Join(uris, " and "), ferr, config.DefaultMirror)
	}
	return "", err
}

// agentBins are the binaries the image carries, from AgentBinDir.
var agentBins = []string{"pithd", "pithctl"}

// findAgents checks that AgentBinDir holds static pithd and pithctl: the
// image has no Go runtime libraries to satisfy a dynamic one.
func findAgents(dir, arch string) (map[string]string, error) {
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
		if err := CheckMachine(p, machine, arch); err != nil {
			return nil, err
		}
		out[name] = p
	}
	return out, nil
}
