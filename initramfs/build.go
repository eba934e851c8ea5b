// Package initramfs builds Pith's initramfs: u-root's Go busybox (the tools
// an operator needs at an emergency shell), Pith's own init as /init, and
// the kernel modules the init loads, as a reproducible, compressed newc cpio.
//
// The busybox is compiled from u-root's sources with gobusybox, so a build
// needs the Go toolchain (`go` in PATH) the first time; the result is cached
// under CacheDir, keyed by u-root's version, the Go version and the command
// list, and later builds only pack files.
package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	pithinit "github.com/pith-os/pith/initramfs/init"
	"github.com/pith-os/pith/initramfs/kmod"
	"github.com/u-root/mkuimage/cpio"
)

// Options configure Build. KernelVersion, ModulesDir and Out are required.
type Options struct {
	KernelVersion string // e.g. 6.1.0-28-cloud-amd64
	ModulesDir    string // lib/modules/<KernelVersion> (modules.dep optional)
	Out           string // where the compressed cpio goes
	Log           func(format string, args ...any)

	// CacheDir holds the compiled busybox; default: the user cache dir's "pith".
	CacheDir string
	// Arch is the GOARCH the busybox is compiled for and InitBinary must
	// be built for; default amd64.
	Arch string
	// InitBinary is the static pith-init; default: pith-init next to the
	// running executable (the Makefile builds it into _out/bin/).
	InitBinary string
	// BusyboxBinary is a prebuilt u-root busybox to use instead of
	// compiling one (e.g. without a Go toolchain); its commands must
	// include Commands.
	BusyboxBinary string
	// Commands are the u-root command packages; default DefaultCommands.
	Commands []string
	// Modules are the modules to load at boot (with their dependencies);
	// default DefaultModules. Names that the kernel has built in are skipped.
	Modules []string
	// Compression is "zstd" (default; Debian's kernel has CONFIG_RD_ZSTD=y)
	// or "gzip".
	Compression string
	// FsckFrom is the image's USR tree (the contents of /usr): its e2fsck,
	// loader and libraries go into the archive, and the init checks ROOT
	// with them before mounting it. Empty: no check.
	FsckFrom string
	// AllowUnverifiedUSR puts the init's AllowUnverifiedFile in the
	// archive: only then does pith.verity=off mount USR without
	// dm-verity (debug images).
	AllowUnverifiedUSR bool
}

// Result describes what Build wrote.
type Result struct {
	Size        int64    // compressed bytes
	Modules     []string // modules included, in load order
	Builtin     []string // wanted modules the kernel has built in (modules.builtin)
	Absent      []string // wanted modules this kernel has neither built in nor as files
	BusyboxPath string   // the cached busybox binary
}

// DefaultCommands is the emergency shell's tool set.
var DefaultCommands = func() []string {
	core := []string{
		"gosh", "ls", "cat", "dmesg", "ip", "mount", "umount", "insmod", "rmmod",
		"lsmod", "ps", "mkdir", "cp", "mv", "rm", "ln", "chmod", "df", "du",
		"echo", "find", "free", "grep", "head", "tail", "hexdump", "kill",
		"mknod", "more", "pwd", "readlink", "sleep", "sync", "uname", "which",
		"blkid", "gpt", "losetup", "dd", "poweroff", "shutdown", "chroot",
		"switch_root", "uptime", "wc", "tee", "touch", "true", "false", "date",
		"hostname", "id", "printenv", "sort", "uniq", "xargs", "gzip", "tar",
		"cpio", "strings", "stty", "tr", "dhclient", "ping", "md5sum", "shasum",
		"truncate", "tty",
	}
	exp := []string{"modprobe", "partprobe", "tac", "ed"}
	var out []string
	for _, c := range core {
		out = append(out, "github.com/u-root/u-root/cmds/core/"+c)
	}
	for _, c := range exp {
		out = append(out, "github.com/u-root/u-root/cmds/exp/"+c)
	}
	return out
}()

// DefaultModules are what Pith boots from on QEMU, EC2 and common
// hypervisors: block and bus drivers, the USR/ROOT/ESP filesystems,
// dm-verity, overlay, fw_cfg (user-data) and virtio networking for the
// shell. sha256_ssse3 is left out on purpose: USR's verity table binds
// the best SHA-256 loaded when it is made, and under QEMU TCG (the VM
// tests) the emulated AVX2 one reads /usr slower than sha256-generic
// (53 against 72 MB/s through dm-verity, measured in a guest).
var DefaultModules = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console",
	"nvme", "ena", "ata_piix", "ahci", "sd_mod", "xen_blkfront", "hv_storvsc",
	"squashfs", "erofs", "ext4", "crc32c_generic", "vfat", "nls_cp437",
	"nls_ascii", // vfat's default iocharset: without it the ESP does not mount
	"nls_iso8859_1", "nls_utf8", "dm_mod", "dm_verity", "overlay",
	"qemu_fw_cfg",
	"sr_mod", // a config drive on a CD-ROM (first boot's Ignition config)
	"loop",   // the live ISO/PXE system's USR image (pith.live)
}

// busyboxTags select gosh's line editor: liner works on a serial console,
// the default (bubbline) waits for terminal replies a serial line never
// sends.
var busyboxTags = []string{"goshliner"}

// urootFallbackVersion is used when the running binary carries no build
// info (go run of a test binary without modules); keep it equal to go.mod.
const urootFallbackVersion = "v0.16.0"

// Build writes the initramfs to opts.Out (through a temporary name).
func Build(ctx context.Context, opts Options) (*Result, error) {
	start := time.Now()
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if opts.KernelVersion == "" || opts.ModulesDir == "" || opts.Out == "" {
		return nil, errors.New("initramfs: KernelVersion, ModulesDir and Out are required")
	}
	if opts.Compression == "" {
		opts.Compression = "zstd"
	}
	if opts.Compression != "zstd" && opts.Compression != "gzip" {
		return nil, fmt.Errorf("initramfs: compression %q is not supported (use zstd or gzip)", opts.Compression)
	}
	if opts.CacheDir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("initramfs: no cache dir (set CacheDir): %w", err)
		}
		opts.CacheDir = filepath.Join(d, "pith")
	}
	if opts.InitBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("initramfs: locating pith-init: %w", err)
		}
		opts.InitBinary = filepath.Join(filepath.Dir(exe), "pith-init")
	}
	if err := checkStatic(opts.InitBinary); err != nil {
		return nil, err
	}
	if err := checkArch(opts.InitBinary, opts.arch()); err != nil {
		return nil, err
	}
	if st, err := os.Stat(opts.ModulesDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("initramfs: modules directory %s is missing: pass the kernel's lib/modules/%s", opts.ModulesDir, opts.KernelVersion)
	}
	if opts.Commands == nil {
		opts.Commands = DefaultCommands
	}
	if opts.Modules == nil {
		opts.Modules = DefaultModules
	}

	deps, err := kmod.Load(opts.ModulesDir)
	if err != nil {
		return nil, fmt.Errorf("initramfs: reading modules of %s: %w", opts.KernelVersion, err)
	}
	order, missing, err := deps.Resolve(opts.Modules)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	builtin, err := kmod.Builtin(opts.ModulesDir)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	var inKernel, absent []string
	for _, m := range missing {
		if builtin[m] {
			inKernel = append(inKernel, m)
		} else {
			absent = append(absent, m)
		}
	}
	logf("initramfs: %d modules with dependencies; built into the kernel: %s; not in this kernel: %s",
		len(order), orNone(inKernel), orNone(absent))

	bbStart := time.Now()
	bbPath, cached := opts.BusyboxBinary, true
	if bbPath == "" {
		bbPath, cached, err = BusyboxArch(ctx, opts.CacheDir, opts.arch(), opts.Commands, logf)
		if err != nil {
			return nil, err
		}
	}
	if cached {
		logf("initramfs: busybox (%d commands) from cache %s", len(opts.Commands), bbPath)
	} else {
		logf("initramfs: compiled busybox (%d commands) in %s", len(opts.Commands), time.Since(bbStart).Round(time.Millisecond))
	}

	recs, err := records(opts, bbPath, deps, order)
	if err != nil {
		return nil, err
	}
	size, err := writeArchive(opts.Out, opts.Compression, recs)
	if err != nil {
		return nil, err
	}
	logf("initramfs: wrote %s (%d files, %.1f MiB %s) in %s", opts.Out, len(recs), float64(size)/(1<<20), opts.Compression, time.Since(start).Round(time.Millisecond))
	return &Result{Size: size, Modules: order, Builtin: inKernel, Absent: absent, BusyboxPath: bbPath}, nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " ")
}

// checkStatic refuses a dynamically linked init: the initramfs has no libc.
func checkStatic(p string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("initramfs: init binary %s: %v (build it with `make bin`, or set InitBinary)", p, err)
	}
	if !bytes.HasPrefix(b, []byte("\x7fELF")) {
		return fmt.Errorf("initramfs: init binary %s is not an ELF executable", p)
	}
	if bytes.Contains(b, []byte("/lib64/ld-linux")) {
		return fmt.Errorf("initramfs: init binary %s is dynamically linked: build it with CGO_ENABLED=0", p)
	}
	return nil
}

// records lists the archive's entries; writeArchive sorts them.
func records(opts Options, bbPath string, deps *kmod.Deps, order []string) ([]cpio.Record, error) {
	var recs []cpio.Record
	dirs := map[string]bool{}
	addDir := func(d string) {
		for d != "." && d != "/" && !dirs[d] {
			dirs[d] = true
			d = path.Dir(d)
		}
	}
	addFile := func(name, src string, perm uint64) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		addDir(path.Dir(name))
		recs = append(recs, cpio.StaticRecord(b, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm}))
		return nil
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "sysroot", "etc", "root"} {
		addDir(d)
	}
	recs = append(recs, cpio.CharDev("dev/console", 0o600, 5, 1), cpio.CharDev("dev/null", 0o666, 1, 3))
	if err := addFile("init", opts.InitBinary, 0o755); err != nil {
		return nil, err
	}
	if err := addFile("bbin/bb", bbPath, 0o755); err != nil {
		return nil, err
	}
	for _, c := range opts.Commands {
		recs = append(recs, cpio.Symlink("bbin/"+path.Base(c), "bb"))
	}
	addDir("bin")
	recs = append(recs, cpio.Symlink("bin/sh", "../bbin/gosh"))
	recs = append(recs, cpio.StaticFile("etc/profile", "export PATH=/bbin:/bin:/sysroot/usr/sbin:/sysroot/usr/bin\n", 0o644))
	if opts.FsckFrom != "" {
		files, err := fsckFiles(opts.FsckFrom)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if err := addFile(f.name, f.src, f.perm); err != nil {
				return nil, err
			}
		}
	}
	if opts.AllowUnverifiedUSR {
		addDir("etc/pith")
		recs = append(recs, cpio.StaticFile(strings.TrimPrefix(pithinit.AllowUnverifiedFile, "/"), "built with pith build --debug-unverified-usr\n", 0o644))
	}

	modDir := path.Join("lib/modules", opts.KernelVersion)
	addDir(modDir)
	sub := &kmod.Deps{Path: map[string]string{}, Deps: map[string][]string{}}
	for _, m := range order {
		src := filepath.Join(opts.ModulesDir, deps.Path[m])
		data, err := kmod.ReadModule(src)
		if err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		// Stored uncompressed: the whole archive is compressed anyway and
		// the init then needs no decompressor.
		rel := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(deps.Path[m], ".xz"), ".zst"), ".gz")
		sub.Path[m] = rel
		sub.Deps[m] = deps.Deps[m]
		name := path.Join(modDir, rel)
		addDir(path.Dir(name))
		recs = append(recs, cpio.StaticRecord(data, cpio.Info{Name: name, Mode: cpio.S_IFREG | 0o644}))
	}
	var dep bytes.Buffer
	if err := sub.WriteDep(&dep, order); err != nil {
		return nil, err
	}
	recs = append(recs, cpio.StaticRecord(dep.Bytes(), cpio.Info{Name: path.Join(modDir, "modules.dep"), Mode: cpio.S_IFREG | 0o644}))
	recs = append(recs, cpio.StaticFile(path.Join(modDir, "pith.modules"), strings.Join(order, "\n")+"\n", 0o644))

	for d := range dirs {
		mode := uint64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		recs = append(recs, cpio.Directory(d, mode))
	}
	return recs, nil
}

// writeArchive writes sorted, normalised records (no mtimes, owners or
// inode numbers from the build host) so equal inputs give equal bytes.
func writeArchive(out, compression string, recs []cpio.Record) (int64, error) {
	for i := range recs {
		recs[i] = cpio.MakeReproducible(recs[i])
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	for i := 1; i < len(recs); i++ {
		if recs[i].Name == recs[i-1].Name {
			return 0, fmt.Errorf("initramfs: %s added twice", recs[i].Name)
		}
	}
	for i := range recs {
		recs[i].Ino = uint64(i + 1)
		recs[i].NLink = 1
		if recs[i].Mode&cpio.S_IFMT == cpio.S_IFDIR {
			recs[i].NLink = 2
		}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	var zw io.WriteCloser
	switch compression {
	case "zstd":
		// One thread and a fixed level: the output depends only on input.
		// An 8 MiB window keeps the kernel's decompressor's memory modest.
		zw, err = zstd.NewWriter(tmp, zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20))
	default:
		zw, err = gzip.NewWriterLevel(tmp, gzip.BestCompression)
	}
	if err != nil {
		tmp.Close()
		return 0, err
	}
	w := cpio.Newc.Writer(zw)
	for _, r := range recs {
		if err := w.WriteRecord(r); err != nil {
			tmp.Close()
			return 0, fmt.Errorf("initramfs: writing %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := zw.Close(); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	st, err := os.Stat(tmp.Name())
	if err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return 0, fmt.Errorf("initramfs: %w", err)
	}
	return st.Size(), nil
}

// urootVersion is the u-root module version this binary was built against.
func urootVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/u-root/u-root" {
				if d.Replace != nil {
					d = d.Replace
				}
				return d.Version
			}
		}
	}
	return urootFallbackVersion
}
