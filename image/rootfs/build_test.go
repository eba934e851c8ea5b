package rootfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/sbom"
)

// cacheDir is the real cache shared with `pith build`, so the test is fast
// once any build has run; downloads only go to the Debian mirror.
func cacheDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "pith")
}

var (
	agentsOnce sync.Once
	agentsDir  string
	agentsErr  error
)

// agentBinDir builds static pithd and pithctl like `make bin` does, once per
// test binary.
func agentBinDir(t *testing.T) string {
	t.Helper()
	agentsOnce.Do(func() {
		agentsDir, agentsErr = os.MkdirTemp("", "pith-rootfs-agents-")
		if agentsErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", agentsDir+"/",
			"github.com/pith-os/pith/cmd/pithd", "github.com/pith-os/pith/cmd/pithctl")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentsErr = fmt.Errorf("build agents: %v\n%s", err, out)
		}
	})
	if agentsErr != nil {
		t.Fatal(agentsErr)
	}
	return agentsDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if agentsDir != "" {
		os.RemoveAll(agentsDir)
	}
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a real Debian rootfs; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test builds a real rootfs with mmdebstrap and needs root: run go test as root (make unit does)")
	}
}

func TestBuildDefault(t *testing.T) {
	needRoot(t)
	cfg := config.Default()
	cfg.Version = "9.8.7-test"
	bins := agentBinDir(t)
	work := t.TempDir()
	opts := Options{Config: cfg, CacheDir: cacheDir(t), WorkDir: work, AgentBinDir: bins, Log: t.Logf}
	res, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	usr := res.UsrDir
	if usr != filepath.Join(work, "rootfs", "usr") {
		t.Errorf("UsrDir %s is not inside WorkDir", usr)
	}
	for _, p := range []string{"lib/systemd/systemd", "bin/pithd", "bin/pithctl", "sbin/sshd", "sbin/dockerd", "bin/sudo",
		"lib/systemd/system/pithd.service", "lib/systemd/system/pithd-firstboot.service", "lib/systemd/system/pith-ssh-keygen.service",
		EtcDefaults + "/passwd", EtcDefaults + "/shadow", EtcDefaults + "/sudoers.d/core", PackageManifest,
		"lib/tmpfiles.d/pith-var.conf", "lib/tmpfiles.d/pith-core.conf"} {
		if _, err := os.Lstat(filepath.Join(usr, p)); err != nil {
			t.Errorf("missing /usr/%s: %v", p, err)
		}
	}
	osr, err := os.ReadFile(filepath.Join(usr, "lib/os-release"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ID=pith\n", "ID_LIKE=debian\n", "VERSION_ID=9.8.7-test\n", `PRETTY_NAME="Pith 9.8.7-test"`} {
		if !strings.Contains(string(osr), want) {
			t.Errorf("os-release lacks %q:\n%s", want, osr)
		}
	}
	if target, err := os.Readlink(filepath.Join(usr, EtcDefaults, "os-release")); err != nil || target != "../usr/lib/os-release" {
		t.Errorf("etc/os-release -> %q, %v", target, err)
	}

	// What the SBOM is made of: dpkg's packages with their sources, the
	// kernel's package, the lists they came from.
	var ssl Package
	for _, p := range res.Packages {
		if p.Name == "libssl3" {
			ssl = p
		}
	}
	if ssl.Version == "" || ssl.Source != "openssl" || ssl.Arch != "amd64" {
		t.Errorf("libssl3 in Packages: %+v", ssl)
	}
	if res.Kernel.Name != "linux-image-"+res.KernelVersion || res.Kernel.Version == "" {
		t.Errorf("kernel package %+v for kernel %s", res.Kernel, res.KernelVersion)
	}
	if idx, err := res.Lists.ReadIndex(); err != nil {
		t.Error(err)
	} else if _, ok := idx.Find("libssl3", ssl.Version, "amd64"); !ok {
		t.Errorf("libssl3 %s is not in the lists the tree was built from", ssl.Version)
	}

	checkEFIGrub(t, res.Grub)

	// Kernel and modules.
	if fi, err := os.Stat(res.KernelPath); err != nil || fi.Size() < 1<<20 {
		t.Errorf("kernel %s: %v", res.KernelPath, err)
	}
	if !strings.HasSuffix(res.KernelVersion, "-cloud-amd64") || filepath.Base(res.KernelPath) != "vmlinuz-"+res.KernelVersion {
		t.Errorf("kernel version %q, path %s", res.KernelVersion, res.KernelPath)
	}
	if res.ModulesDir != filepath.Join(usr, "lib/modules", res.KernelVersion) {
		t.Errorf("ModulesDir %s", res.ModulesDir)
	}
	dep, err := os.ReadFile(filepath.Join(res.ModulesDir, "modules.dep"))
	if err != nil || !strings.Contains(string(dep), "virtio_blk.ko") {
		t.Errorf("modules.dep lacks virtio_blk: %v", err)
	}

	// The machine-specific files are gone, the core user is there.
	etc := filepath.Join(usr, EtcDefaults)
	for _, p := range []string{"machine-id", "hostname", "ssh/ssh_host_ed25519_key", "ssh/ssh_host_rsa_key"} {
		if _, err := os.Lstat(filepath.Join(etc, p)); err == nil {
			t.Errorf("/etc/%s must not ship in the image", p)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(etc, "passwd"))
	if !strings.Contains(string(passwd), "\ncore:x:500:500:Pith Admin:/home/core:/bin/bash\n") {
		t.Errorf("no core user in passwd:\n%s", passwd)
	}
	group, _ := os.ReadFile(filepath.Join(etc, "group"))
	for _, g := range []string{"sudo", "docker"} {
		found := false
		for _, l := range strings.Split(string(group), "\n") {
			if strings.HasPrefix(l, g+":") && strings.Contains(l+",", ":core,") || strings.HasPrefix(l, g+":") && strings.Contains(l+",", ",core,") {
				found = true
			}
		}
		if !found {
			t.Errorf("core is not in group %s", g)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(etc, "shadow"), &st); err != nil || st.Mode&0o777 != 0o640 {
		t.Errorf("shadow mode %o: %v", st.Mode&0o777, err)
	}
	// Enabled units: what the preset names, not what the packages enabled.
	wants := filepath.Join(etc, "systemd/system/multi-user.target.wants")
	for _, u := range []string{"pithd.service", "pithd-firstboot.service", "ssh.service", "pith-ssh-keygen.service", "systemd-networkd.service"} {
		if _, err := os.Lstat(filepath.Join(wants, u)); err != nil {
			t.Errorf("%s is not enabled: %v", u, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(wants, "docker.service")); err == nil {
		t.Errorf("docker.service is enabled; docker.socket should start it on demand")
	}
	if _, err := os.Lstat(filepath.Join(etc, "systemd/system/sockets.target.wants/docker.socket")); err != nil {
		t.Errorf("docker.socket is not enabled: %v", err)
	}

	for _, u := range []string{"system/systemd-firstboot.service", "system/systemd-repart.service", "system/modprobe@drm.service", "system-generators/systemd-gpt-auto-generator"} {
		if target, err := os.Readlink(filepath.Join(etc, "systemd", u)); err != nil || target != "/dev/null" {
			t.Errorf("%s is not masked: %q %v", u, target, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(etc, "systemd/system/timers.target.wants/pith-ssh-keygen-rsa.timer")); err != nil {
		t.Errorf("pith-ssh-keygen-rsa.timer is not enabled: %v", err)
	}
	// Setuid bits and file capabilities survive (and the cache round trip).
	if err := unix.Stat(filepath.Join(usr, "bin/sudo"), &st); err != nil || st.Mode&unix.S_ISUID == 0 || st.Uid != 0 {
		t.Errorf("sudo lost its setuid bit: mode %o uid %d %v", st.Mode, st.Uid, err)
	}
	if sz, err := unix.Getxattr(filepath.Join(usr, "bin/ping"), "security.capability", nil); err != nil || sz == 0 {
		t.Errorf("ping lost its cap_net_raw capability: %v", err)
	}
	// Documentation is gone, licenses stay.
	if _, err := os.Stat(filepath.Join(usr, "share/man")); err == nil {
		if m, _ := filepath.Glob(filepath.Join(usr, "share/man/*")); len(m) > 0 {
			t.Errorf("manual pages ship: %v", m[:1])
		}
	}
	if _, err := os.Stat(filepath.Join(usr, "share/doc/systemd/copyright")); err != nil {
		t.Errorf("copyright file dropped: %v", err)
	}
	// No timestamp after the epoch.
	err = filepath.WalkDir(filepath.Join(work, "rootfs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Mtim.Sec > cfg.Epoch || st.Mtim.Nsec != 0 {
			t.Errorf("%s has mtime %d.%09d, after the epoch %d", p, st.Mtim.Sec, st.Mtim.Nsec, cfg.Epoch)
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	h1, err := TreeHash(usr)
	if err != nil {
		t.Fatal(err)
	}
	// A second build over the same work dir (now from the cache) gives the
	// same tree.
	res2, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatalf("second Build: %v", err)
	}
	h2, err := TreeHash(res2.UsrDir)
	if err != nil {
		t.Fatal(err)
	}
	if h1 != h2 {
		t.Errorf("two builds differ: %s vs %s", h1, h2)
	}
	t.Logf("kernel %s, TreeHash %s", res.KernelVersion, h1)
}

// checkEFIGrub: the default (bookworm) build's UEFI GRUB is Debian's 2.12
// or later with its own grub-mkimage, and its linux module is the generic
// EFI loader (the kernel's stub through LoadImage, the initrd through
// LoadFile2), not 2.06's jump to the 32-bit entry.
func checkEFIGrub(t *testing.T, g bootloader.Grub) {
	t.Helper()
	if sbom.CompareVersions(g.Version, MinEFIGrub) < 0 || g.MkImage == "" {
		t.Fatalf("UEFI GRUB %+v, want %s or later with its grub-mkimage", g, MinEFIGrub)
	}
	out, err := exec.Command(g.MkImage, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), g.Version) {
		t.Errorf("%s --version: %v: %s, want %s", g.MkImage, err, out, g.Version)
	}
	mod, err := os.ReadFile(filepath.Join(g.Lib, "x86_64-efi", "linux.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"UEFI stub kernel:", "Providing initrd via EFI_LOAD_FILE2_PROTOCOL", "starting image %p"} {
		if !strings.Contains(string(mod), want) {
			t.Errorf("GRUB %s's linux.mod lacks %q: not the EFI stub loader", g.Version, want)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	needRoot(t)
	bins := agentBinDir(t)
	tests := []struct {
		name  string
		edit  func(*config.Config)
		want  []string
		noPre bool // skip the cached-lists check: apt itself must say it
	}{
		{"unreachable mirror", func(c *config.Config) { c.Mirror = "http://127.0.0.1:9/debian" },
			[]string{"debian.mirror: cannot download from http://127.0.0.1:9/debian", "use http://deb.debian.org/debian"}, false},
		{"missing package", func(c *config.Config) { c.Packages = []string{"pith-no-such-package"} },
			[]string{"debian.packages: package pith-no-such-package not found in bookworm", "remove it"}, false},
		{"missing package reported by apt", func(c *config.Config) { c.Packages = []string{"pith-no-such-package"} },
			[]string{"debian.packages: package pith-no-such-package not found in bookworm", "remove it"}, true},
		{"missing kernel", func(c *config.Config) { c.KernelPackage = "linux-image-pith-none" },
			[]string{"debian.kernel:", "linux-image-pith-none not found"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			tt.edit(&cfg)
			preflightEnabled = !tt.noPre
			defer func() { preflightEnabled = true }()
			cache := cacheDir(t)
			work := t.TempDir()
			_, err := Build(context.Background(), Options{Config: cfg, CacheDir: cache, WorkDir: work, AgentBinDir: bins})
			if err == nil {
				t.Fatal("Build succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			// Nothing half-built: no tree, no cache entry for this config.
			for _, p := range []string{filepath.Join(work, "rootfs"), filepath.Join(work, "rootfs.mmdebstrap"),
				filepath.Join(cache, "rootfs", "debian-"+debianKey(cfg, listsDigest(cache, cfg))[:24]+".tar.zst")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s left behind", p)
				}
			}
			if m, _ := filepath.Glob(filepath.Join(cache, "rootfs", ".tmp-*")); len(m) > 0 {
				t.Errorf("temporary cache files left: %v", m)
			}
		})
	}
}

// listsDigest is the digest of the config's cached apt lists ("" without).
func listsDigest(cache string, c config.Config) string {
	d, _ := apt.Lists{Dir: apt.ListsDir(cache, c.Archives()), Archives: c.Archives()}.Digest()
	return d
}

func TestBuildAgentErrors(t *testing.T) {
	empty := t.TempDir()
	notELF := t.TempDir()
	for _, n := range agentBins {
		if err := os.WriteFile(filepath.Join(notELF, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		dir  string
		want string
	}{
		{"", "no agent binary directory"},
		{empty, "pithd is missing: run make bin"},
		{notELF, "is not a Linux executable"},
	}
	for _, tt := range tests {
		_, err := Build(context.Background(), Options{Config: config.Default(), CacheDir: t.TempDir(), WorkDir: t.TempDir(), AgentBinDir: tt.dir})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("AgentBinDir %q: error %v, want %q", tt.dir, err, tt.want)
		}
	}
	// A dynamically linked binary is refused.
	dyn := t.TempDir()
	for _, n := range agentBins {
		b, err := os.ReadFile("/bin/ls")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dyn, n), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Build(context.Background(), Options{Config: config.Default(), CacheDir: t.TempDir(), WorkDir: t.TempDir(), AgentBinDir: dyn})
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("dynamic agent: error %v", err)
	}
}
