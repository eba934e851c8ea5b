package rootfs

import (
	"bufio"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pith-os/pith/image/config"
)

// Where the /etc and /var defaults go inside /usr. The initramfs copies
// share/pith/etc to /etc on first boot; share/pith/var is copied into /var
// by systemd-tmpfiles (tmpfiles.d/pith-var.conf) wherever it is missing.
const (
	EtcDefaults = "share/pith/etc"
	VarDefaults = "share/pith/var"
	// PackageManifest lists the Debian packages in the image, one
	// "name version architecture" per line: the image keeps no dpkg database.
	PackageManifest = "share/pith/packages.txt"
)

// customize turns the Debian tree at root into Pith's: the kernel located,
// /etc adjusted, documentation dropped, os-release and agents written, /etc
// and /var moved under /usr/share/pith.
func customize(root string, cfg config.Config, agents map[string]string) (*Result, error) {
	usr := filepath.Join(root, "usr")
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return nil, fmt.Errorf("rootfs: expected one kernel in %s/boot, found %d: remove the cached tree under the cache's rootfs/ and rebuild", root, len(kernels))
	}
	kver := strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")
	modules := filepath.Join(usr, "lib", "modules", kver)
	if _, err := os.Stat(filepath.Join(modules, "modules.dep")); err != nil {
		return nil, fmt.Errorf("rootfs: kernel %s has no modules.dep (depmod did not run): remove the cached tree and rebuild", kver)
	}

	statusPath := filepath.Join(root, "var", "lib", "dpkg", "status")
	manifest, err := packageManifest(statusPath)
	if err != nil {
		return nil, err
	}
	pkgs, err := installedPackages(statusPath)
	if err != nil {
		return nil, err
	}
	kpkg, err := kernelPackage(filepath.Join(root, "boot", "pith-kernel-package"))
	if err != nil {
		return nil, err
	}
	if err := etcDefaults(filepath.Join(root, "etc"), usr, cfg); err != nil {
		return nil, err
	}
	if err := addOverlay(root); err != nil {
		return nil, err
	}
	// After preset-all, whose "disable *" would take a template
	// instance's mask (modprobe@drm) away again.
	if err := maskUnits(filepath.Join(root, "etc")); err != nil {
		return nil, err
	}
	if err := dropPaths(root, "usr", dropUsr); err != nil {
		return nil, err
	}
	if err := dropPaths(root, "var", dropVar); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(usr, "lib", "os-release"), osRelease(cfg), 0o644); err != nil {
		return nil, err
	}
	for _, name := range agentBins {
		if err := copyFile(agents[name], filepath.Join(usr, "bin", name), 0o755); err != nil {
			return nil, fmt.Errorf("copy %s into the image: %w", name, err)
		}
	}
	if err := mkdirAll(filepath.Join(usr, "share", "pith")); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(usr, PackageManifest), manifest, 0o644); err != nil {
		return nil, err
	}
	for _, d := range []struct{ from, to string }{{"etc", EtcDefaults}, {"var", VarDefaults}} {
		dst := filepath.Join(usr, d.to)
		if err := os.RemoveAll(dst); err != nil {
			return nil, err
		}
		if err := os.Rename(filepath.Join(root, d.from), dst); err != nil {
			return nil, fmt.Errorf("move /%s defaults into /usr: %w", d.from, err)
		}
	}
	conf, err := varTmpfiles(filepath.Join(usr, VarDefaults), "/usr/"+VarDefaults)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(usr, "lib", "tmpfiles.d", "pith-var.conf"), conf, 0o644); err != nil {
		return nil, err
	}
	return &Result{
		UsrDir:        usr,
		KernelPath:    kernels[0],
		KernelVersion: kver,
		ModulesDir:    modules,
		Packages:      pkgs,
		Kernel:        kpkg,
	}, nil
}

// overlayFS holds Pith's static files: units, presets, network and tmpfiles
// configuration, sshd settings.
//
//go:embed overlay
var overlayFS embed.FS

// addOverlay writes Pith's static files into root, then enables exactly the
// units the presets name (40-pith.preset ends with "disable *"), with the
// image's own systemctl.
func addOverlay(root string) error {
	sub, err := fs.Sub(overlayFS, "overlay")
	if err != nil {
		return err
	}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		return writeFile(filepath.Join(root, p), b, 0o644)
	})
	if err != nil {
		return fmt.Errorf("add Pith's files: %w", err)
	}
	out, err := exec.Command("chroot", root, "systemctl", "preset-all").CombinedOutput()
	if err != nil {
		return fmt.Errorf("enable units (systemctl preset-all in the image): %v: %s", err, lastLine(out))
	}
	return nil
}

// etcDefaults makes /etc fit a fleet of machines from one image: no
// machine-specific identity (machine-id, hostname, SSH host keys), the core
// user, and Pith's texts.
func etcDefaults(etc, usr string, cfg config.Config) error {
	for _, pattern := range []string{
		"machine-id", "hostname", // systemd makes the id; DHCP or user-data names the host
		"ssh/ssh_host_*", // pith-ssh-keygen.service makes each machine's own
		"passwd-", "group-", "shadow-", "gshadow-", ".pwd.lock",
	} {
		matches, _ := filepath.Glob(filepath.Join(etc, pattern))
		for _, m := range matches {
			if err := os.Remove(m); err != nil {
				return err
			}
		}
	}
	// No apt in the image: its sources would only mislead.
	if _, err := os.Stat(filepath.Join(usr, "bin", "apt-get")); os.IsNotExist(err) {
		if err := os.RemoveAll(filepath.Join(etc, "apt")); err != nil {
			return err
		}
	}
	db, err := readAccounts(etc)
	if err != nil {
		return fmt.Errorf("read account files: %w", err)
	}
	if db, err = addAccount(db, coreUser, cfg.Epoch/86400); err != nil {
		return fmt.Errorf("add the core user: %w", err)
	}
	if err := writeAccounts(etc, db); err != nil {
		return err
	}
	files := []struct {
		path string
		data string
		mode os.FileMode
	}{
		{"sudoers.d/core", "# The core user administers the machine (CoreOS did the same).\ncore ALL=(ALL) NOPASSWD: ALL\n", 0o440},
		{"fstab", "# / and /usr are mounted by the initramfs (pith.root=, pith.usr=).\n# Add mounts here or as .mount units.\n", 0o644},
		{"issue", `\S{PRETTY_NAME} \n \l` + "\n\n", 0o644},
		{"issue.net", `\S{PRETTY_NAME}` + "\n", 0o644},
		{"motd", "", 0o644},
		// C.UTF-8 is built into glibc: UTF-8 without a locales package.
		{"locale.conf", "LANG=C.UTF-8\n", 0o644},
		{"default/locale", "LANG=C.UTF-8\n", 0o644},
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(etc, f.path), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	if err := disableStockAppArmor(etc); err != nil {
		return err
	}
	osr := filepath.Join(etc, "os-release")
	if err := os.RemoveAll(osr); err != nil {
		return err
	}
	return os.Symlink("../usr/lib/os-release", osr)
}

// osRelease renders /usr/lib/os-release (man os-release). VERSION_ID only
// allows lower-case letters, digits, '.', '_' and '-'.
func osRelease(cfg config.Config) []byte {
	id := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, cfg.Version)
	build := time.Unix(cfg.Epoch, 0).UTC().Format("20060102") + "." + cfg.Hash()[:12]
	var b strings.Builder
	for _, kv := range [][2]string{
		{"NAME", "Pith"},
		{"ID", "pith"},
		{"ID_LIKE", "debian"},
		{"VERSION", cfg.Version + " (" + cfg.Suite + ")"},
		{"VERSION_ID", id},
		{"VERSION_CODENAME", cfg.Suite},
		{"PRETTY_NAME", "Pith " + cfg.Version},
		{"BUILD_ID", build},
		{"HOME_URL", "https://github.com/pith-os/pith"},
		{"BUG_REPORT_URL", "https://github.com/pith-os/pith/issues"},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], osQuote(kv[1]))
	}
	return []byte(b.String())
}

// osQuote quotes a value the shell-compatible way os-release requires, only
// when needed.
func osQuote(v string) string {
	plain := v != ""
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r)) {
			plain = false
		}
	}
	if plain {
		return v
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`")
	return `"` + r.Replace(v) + `"`
}

// dropUsr says whether a path under /usr is left out of the image: manuals
// and documentation (except the copyright files the licenses require) and
// message translations.
func dropUsr(rel string, _ bool) bool {
	parts := strings.Split(rel, "/")
	if len(parts) < 3 || parts[0] != "usr" || parts[1] != "share" {
		return false
	}
	switch parts[2] {
	case "man", "info", "lintian", "doc-base", "bug", "linda":
		return len(parts) > 3
	case "locale":
		return len(parts) > 3 && parts[3] != "locale.alias"
	case "doc":
		return len(parts) > 4 && parts[4] != "copyright"
	}
	return false
}

// dropVar says whether a path under /var stays out of the /var defaults:
// package manager state, caches and build-time logs.
func dropVar(rel string, isDir bool) bool {
	for _, p := range []string{"var/lib/apt", "var/lib/dpkg", "var/lib/ucf", "var/backups", "var/cache/apt", "var/cache/debconf", "var/cache/ldconfig", "var/log/apt"} {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	// Log files from the build; the log directories stay.
	return strings.HasPrefix(rel, "var/log/") && !isDir
}

// dropPaths removes every path under root/top that drop selects; drop gets
// the path relative to root.
func dropPaths(root, top string, drop func(rel string, isDir bool) bool) error {
	var doomed []string
	err := filepath.WalkDir(filepath.Join(root, top), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if drop(rel, d.IsDir()) {
			doomed = append(doomed, p)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range doomed {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

// varTmpfiles writes one tmpfiles.d "C" (copy if missing) line per entry of
// the /var defaults: entries of /var itself when they are not directories or
// are empty, otherwise the entries one level down (/var/lib/dbus, ...), so
// a machine gets what is missing and keeps what it has.
func varTmpfiles(dir, source string) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# Generated by pith build: copy the image's /var defaults where missing.\n")
	top, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range top {
		sub := []os.DirEntry{}
		if e.IsDir() {
			if sub, err = os.ReadDir(filepath.Join(dir, e.Name())); err != nil {
				return nil, err
			}
		}
		if len(sub) == 0 {
			fmt.Fprintf(&b, "C /var/%s - - - - %s/%s\n", e.Name(), source, e.Name())
			continue
		}
		for _, s := range sub {
			fmt.Fprintf(&b, "C /var/%s/%s - - - - %s/%s/%s\n", e.Name(), s.Name(), source, e.Name(), s.Name())
		}
	}
	return []byte(b.String()), nil
}

// packageManifest lists the installed packages from dpkg's status file.
func packageManifest(status string) ([]byte, error) {
	f, err := os.Open(status)
	if err != nil {
		return nil, fmt.Errorf("read the package database: %w", err)
	}
	defer f.Close()
	return parseStatus(f)
}

func parseStatus(r io.Reader) ([]byte, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	fields := map[string]string{}
	flush := func() {
		if strings.HasSuffix(fields["Status"], " installed") && fields["Package"] != "" {
			out = append(out, fmt.Sprintf("%s %s %s", fields["Package"], fields["Version"], fields["Architecture"]))
		}
		fields = map[string]string{}
	}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
			fields[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	flush()
	slices.Sort(out)
	return []byte(strings.Join(out, "\n") + "\n"), nil
}

// stockAppArmorProfiles are the profiles Debian's apparmor package puts in
// /etc/apparmor.d, for programs Pith does not ship. apparmor.service (needed
// so dockerd finds apparmor_parser and a loaded policy) compiled them on
// every first boot before sysinit.target: 41 s of a loaded TCG boot, 7.8 s
// of an idle one, against 1.8 s with them disabled.
var stockAppArmorProfiles = []string{"lsb_release", "nvidia_modprobe"}

// maskedUnits are the Debian units and generators (under /etc/systemd)
// the image masks, as an operator would: they would block the boot or
// only cost it time on every machine (each modprobe is a process and a
// module load; emulated, seconds of CPU).
var maskedUnits = []string{
	// It would ask for a locale, time zone and root password on the
	// console at first boot (no machine-id yet) and wait forever.
	"system/systemd-firstboot.service",
	// pith-init grows ROOT; repart finds nothing to do, but its Wants
	// load the loop and dm_mod modules on every boot.
	"system/systemd-repart.service",
	// logind loads the DRM module for graphical seats; a server has none.
	"system/modprobe@drm.service",
	// It mounts partitions found by their Discoverable Partitions type
	// GUIDs; Pith's disk has its own layout and mount units.
	"system-generators/systemd-gpt-auto-generator",
}

// maskUnits links each of maskedUnits to /dev/null under etc/systemd.
func maskUnits(etc string) error {
	for _, m := range maskedUnits {
		mask := filepath.Join(etc, "systemd", m)
		if err := mkdirAll(filepath.Dir(mask)); err != nil {
			return err
		}
		if err := os.RemoveAll(mask); err != nil {
			return err
		}
		if err := os.Symlink("/dev/null", mask); err != nil {
			return err
		}
	}
	return nil
}

// disableStockAppArmor links the stock profiles into apparmor.d/disable,
// AppArmor's own way to keep a profile from loading; profiles added later
// (user-data, extra packages) still load.
func disableStockAppArmor(etc string) error {
	dir := filepath.Join(etc, "apparmor.d")
	for _, p := range stockAppArmorProfiles {
		if _, err := os.Lstat(filepath.Join(dir, p)); err != nil {
			continue // not in this apparmor release
		}
		if err := mkdirAll(filepath.Join(dir, "disable")); err != nil {
			return err
		}
		link := filepath.Join(dir, "disable", p)
		if err := os.RemoveAll(link); err != nil {
			return err
		}
		if err := os.Symlink("/etc/apparmor.d/"+p, link); err != nil {
			return err
		}
	}
	return nil
}
