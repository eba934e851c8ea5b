package rootfs

import (
	"bufio"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/config"
)

// BasePackages are installed on top of Debian's Essential set: what the
// issue asks for, plus what an operator needs on a node (pager, ping, ps,
// filesystem tools: the mkfs of every format Ignition's storage.filesystems
// may ask for, run from USR by the initramfs; bookworm's xfsprogs brings
// python3 and libicu along), passwd for user-data's users, networkd's companions
// (resolved, timesyncd) and libpam-systemd for logind sessions over SSH.
// apparmor: the kernel has AppArmor on, and dockerd refuses to start any
// container when it cannot load its docker-default profile with
// apparmor_parser. Ignition's storage.raid and storage.luks: mdadm
// (creates the arrays, and its udev rules assemble them on every boot),
// cryptsetup-bin (formats and opens; systemd-cryptsetup, in systemd,
// unlocks from crypttab) and the tpm2-tss libraries that bookworm's
// systemd 252 dlopens for TPM2 binding and unlocking (esys, rc, mu) with
// the device TCTI it loads by name (libtss2-tcti-device.so.0).
var BasePackages = []string{
	"systemd", "systemd-sysv", "dbus", "udev", "openssh-server", "iproute2",
	"ca-certificates", "sudo", "rsync", "curl", "docker.io",
	"systemd-resolved", "systemd-timesyncd", "libpam-systemd", "kmod",
	"passwd", "procps", "less", "iputils-ping", "e2fsprogs", "xfsprogs",
	"dosfstools", "netbase", "vim-tiny", "apparmor",
	"mdadm", "cryptsetup-bin", "libtss2-esys-3.0.2-0", "libtss2-rc0",
	"libtss2-mu0", "libtss2-tcti-device0",
}

// recipeVersion changes when the recipe changes in a way the hashed inputs
// below do not show, to retire old cached trees.
const recipeVersion = 1

//go:embed hooks
var hooksFS embed.FS

// debianKey names the cached Debian tree: everything that goes into the
// mmdebstrap run, including the hook scripts and the archives' state (the
// digest of their apt indexes), so a tree is reused only while the archives
// offer the same package versions, and a build after Debian published a fix
// installs it.
func debianKey(c config.Config, listsDigest string) string {
	h := sha256.New()
	pkgs := packageList(c)
	fmt.Fprintf(h, "recipe %d\nsuite %s\nmirror %s\nkernel %s\nepoch %d\npackages %s\n",
		recipeVersion, c.Suite, config.NormalizeMirror(c.Mirror), c.KernelPackage, c.Epoch, strings.Join(pkgs, ","))
	for _, a := range c.Archives() {
		fmt.Fprintf(h, "archive %s\n", a.SourcesLine())
	}
	if c.Arch != config.DefaultArch {
		fmt.Fprintf(h, "arch %s\n", c.Arch) // amd64 keys stay what they were
	}
	fmt.Fprintf(h, "lists %s\n", listsDigest)
	_ = fs.WalkDir(hooksFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := hooksFS.ReadFile(p)
		fmt.Fprintf(h, "file %s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

// packageList is the base set plus the config's packages, sorted, once each.
func packageList(c config.Config) []string {
	pkgs := append(slices.Clone(BasePackages), c.Packages...)
	slices.Sort(pkgs)
	return slices.Compact(pkgs)
}

// writeEmbedded copies an embedded tree into dir: directories 0755, files
// 0644, shell scripts 0755, owned by the caller (root).
func writeEmbedded(src embed.FS, dir string) error {
	return fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, p)
		if d.IsDir() {
			return mkdirAll(dst)
		}
		b, err := src.ReadFile(p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		return writeFile(dst, b, mode)
	})
}

// debootstrap runs mmdebstrap into root. On failure root is removed and the
// error is one line naming the cause and the fix.
func debootstrap(ctx context.Context, c config.Config, lists apt.Lists, cache, work, root string, logf func(string, ...any)) error {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return errors.New("mmdebstrap is not installed: run make deps (or apt-get install mmdebstrap)")
	}
	recipe := filepath.Join(work, "recipe")
	if err := os.RemoveAll(recipe); err != nil {
		return err
	}
	if err := writeEmbedded(hooksFS, recipe); err != nil {
		return fmt.Errorf("write build hooks: %w", err)
	}
	mirror := config.NormalizeMirror(c.Mirror)
	archives := filepath.Join(cache, "debian", "archives")
	if err := os.MkdirAll(archives, 0o755); err != nil {
		return fmt.Errorf("create cache dir: %w", err)
	}
	if err := preflight(c, lists.Dir, time.Now()); err != nil {
		return err
	}
	cached := countDebs(archives)
	foreign, err := foreignArchArgs(c.Arch)
	if err != nil {
		return err
	}

	tmp := root + ".mmdebstrap"
	if err := safeRemoveAll(tmp); err != nil {
		return err
	}
	args := []string{
		"--mode=root", "--variant=essential", "--format=directory",
		"--include=" + strings.Join(packageList(c), ","),
		// debootstrap's merged-/usr (directory symlinks) without the usrmerge
		// package and its perl dependencies.
		"--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
		"--skip=essential/unlink",
		// The setup hook seeds the lists fetched (and keyed) before: apt
		// must install from exactly that archive state.
		"--skip=update",
		"--setup-hook=" + filepath.Join(recipe, "hooks", "setup.sh"),
		"--customize-hook=" + filepath.Join(recipe, "hooks", "customize.sh"),
	}
	args = append(append(args, foreign...), c.Suite, tmp)
	var suites []string
	for _, a := range lists.Archives {
		args = append(args, a.SourcesLine())
		suites = append(suites, a.Suite)
	}
	logf("rootfs: mmdebstrap %s from %s: %d packages + Essential, %d .debs cached", strings.Join(suites, " "), mirror, len(packageList(c)), cached)
	// The tree's modes must not depend on the caller's umask.
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c", `umask 022 && exec mmdebstrap "$@"`, "mmdebstrap"}, args...)...)
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("SOURCE_DATE_EPOCH=%d", c.Epoch),
		"PITH_ARCHIVES="+archives,
		"PITH_LISTS="+lists.Dir,
		"PITH_KERNEL="+c.KernelPackage,
		"PITH_WORK="+work,
		"LC_ALL=C.UTF-8",
	)
	// mmdebstrap unmounts /proc, /sys and /dev from the chroot when it is
	// told to stop; a SIGKILL would leave them mounted.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	logPath := filepath.Join(work, "mmdebstrap.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var output []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			output = append(output, line)
			if msg, ok := strings.CutPrefix(line, "I: "); ok && !strings.HasPrefix(msg, "running --") {
				logf("rootfs: mmdebstrap: %s", msg)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	runErr := cmd.Run()
	pw.Close()
	<-done
	if runErr != nil {
		rmErr := safeRemoveAll(tmp)
		if ctx.Err() != nil {
			return fmt.Errorf("rootfs: interrupted: %w", ctx.Err())
		}
		err := explainFailure(output, c)
		if rmErr != nil {
			return fmt.Errorf("%v (and could not remove %s: %v)", err, tmp, rmErr)
		}
		return fmt.Errorf("%v (log: %s)", err, logPath)
	}
	logf("rootfs: %d .debs now cached", countDebs(archives))
	return os.Rename(tmp, root)
}

func countDebs(dir string) int {
	m, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	return len(m)
}

var (
	reNoPackage   = regexp.MustCompile(`^E: Unable to locate package (\S+)`)
	reNoCandidate = regexp.MustCompile(`^E: Package '([^']+)' has no installation candidate`)
	reNoRelease   = regexp.MustCompile(`^E: The repository '(.+)' does not have a Release file`)
	reFetch       = regexp.MustCompile(`^(?:E|W): Failed to fetch (\S+)\s+(.*)$`)
	reErrLine     = regexp.MustCompile(`^Err:\d+ (\S+)`)
	reUnmet       = regexp.MustCompile(`^ (\S+) : Depends: (.+)$`)
	rePith        = regexp.MustCompile(`pith-error: (.+)$`)
)

// explainFailure turns mmdebstrap's and apt's output into one line naming the
// problem and the fix.
func explainFailure(output []string, c config.Config) error {
	mirror := config.NormalizeMirror(c.Mirror)
	which := func(pkg string) string {
		if pkg == c.KernelPackage {
			return "debian.kernel: package " + pkg
		}
		if slices.Contains(c.Packages, pkg) {
			return "debian.packages: package " + pkg
		}
		return "package " + pkg + " (Pith's base set)"
	}
	fix := func(pkg string) string {
		if slices.Contains(c.Packages, pkg) || pkg == c.KernelPackage {
			return "check the name (https://packages.debian.org/" + c.Suite + "/" + pkg + ") or remove it"
		}
		return "use a suite that has it (debian.suite: " + config.DefaultSuite + ")"
	}
	for _, line := range output {
		if m := rePith.FindStringSubmatch(line); m != nil {
			return fmt.Errorf("debian.kernel: %s in %s (%s): set debian.kernel to a linux-image package, e.g. %s", m[1], c.Suite, mirror, config.DefaultKernelPackage)
		}
	}
	for _, line := range output {
		if m := reNoPackage.FindStringSubmatch(line); m != nil {
			return fmt.Errorf("%s not found in %s (%s): %s", which(m[1]), c.Suite, mirror, fix(m[1]))
		}
		if m := reNoCandidate.FindStringSubmatch(line); m != nil {
			return fmt.Errorf("%s has no installable version in %s (%s): %s", which(m[1]), c.Suite, mirror, fix(m[1]))
		}
		if reNoRelease.MatchString(line) {
			return fmt.Errorf("debian.suite: %s has no suite %q (no Release file): check debian.suite and debian.mirror", mirror, c.Suite)
		}
	}
	// Network trouble shows as "Err:N URL" followed by an indented reason,
	// or as "Failed to fetch URL reason".
	for i, line := range output {
		if m := reErrLine.FindStringSubmatch(line); m != nil && i+1 < len(output) && strings.HasPrefix(output[i+1], "  ") {
			return unreachable(mirror, strings.TrimSpace(output[i+1]))
		}
		if m := reFetch.FindStringSubmatch(line); m != nil {
			return unreachable(mirror, strings.TrimSpace(m[2]))
		}
	}
	for _, line := range output {
		if m := reUnmet.FindStringSubmatch(line); m != nil {
			return fmt.Errorf("%s cannot be installed (depends on %s) in %s: %s", which(m[1]), strings.TrimSpace(m[2]), c.Suite, fix(m[1]))
		}
	}
	for i := len(output) - 1; i >= 0; i-- {
		if strings.HasPrefix(output[i], "E: ") && !strings.Contains(output[i], "mmdebstrap failed") {
			return fmt.Errorf("mmdebstrap failed: %s", strings.TrimPrefix(output[i], "E: "))
		}
	}
	if len(output) > 0 {
		return fmt.Errorf("mmdebstrap failed: %s", output[len(output)-1])
	}
	return errors.New("mmdebstrap failed without output")
}

func unreachable(mirror, reason string) error {
	if len(reason) > 160 {
		reason = reason[:160] + "..."
	}
	return fmt.Errorf("debian.mirror: cannot download from %s (%s): check the URL and the network, or use %s", mirror, reason, config.DefaultMirror)
}
