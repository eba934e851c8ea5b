package pithinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mustExec runs a host tool for a test.
func mustExec(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// ext4Loop makes an ext4 labelled ROOT in a file and attaches it as a
// loop device, as ROOT's partition or its volume would be.
func ext4Loop(t *testing.T, dir, name string) string {
	t.Helper()
	img := filepath.Join(dir, name)
	mustExec(t, "truncate", "-s", "32M", img)
	mustExec(t, "mkfs.ext4", "-q", "-F", "-L", "ROOT", img)
	dev := mustExec(t, "losetup", "-f", "--show", img)
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// fsMagic is the statfs type of what is mounted at p.
func fsMagic(t *testing.T, p string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type
}

// First boot's swap on real mounts: ROOT's files move to a tmpfs at the
// new root with USR moved along and ROOT's device left unmounted (free
// for luksFormat); what the stage writes there meanwhile and ROOT's files
// then land on the new filesystem, mounted at the new root with USR.
func TestRootSwap(t *testing.T) {
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf // CI runs as root with the tools
	}
	if os.Geteuid() != 0 {
		skip("needs root for loop devices and mounts")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "truncate"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip("%s is not installed", tool)
		}
	}
	dir := t.TempDir()
	s := rootSwap{filepath.Join(dir, "sysroot"), filepath.Join(dir, "stash"), filepath.Join(dir, "view"), filepath.Join(dir, "new")}
	usrSrc := filepath.Join(dir, "usr-src")
	writeTree(t, usrSrc, map[string]string{"lib/os-release": "ID=pith\n"})
	oldDev, newDev := ext4Loop(t, dir, "root.img"), ext4Loop(t, dir, "volume.img")
	if err := os.MkdirAll(s.sysroot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(oldDev, s.sysroot, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = unix.Unmount(filepath.Join(s.sysroot, "usr"), unix.MNT_DETACH)
		_ = unix.Unmount(s.sysroot, unix.MNT_DETACH)
	})
	writeTree(t, s.sysroot, map[string]string{"etc/hostname": "pith\n", MarkerPath: "yes\n", StorageStarted: ""})
	if err := os.Symlink("usr/lib", filepath.Join(s.sysroot, "lib")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(s.sysroot, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(usrSrc, filepath.Join(s.sysroot, "usr"), "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}

	if err := s.stashRoot(); err != nil {
		t.Fatal(err)
	}
	if got := fsMagic(t, s.sysroot); got != unix.TMPFS_MAGIC {
		t.Errorf("after stashRoot the new root is fs type %#x, want tmpfs", got)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{" " + s.stash + " ", " " + s.view + " ", oldDev + " "} {
		if strings.Contains(string(mounts), m) {
			t.Errorf("%q is still mounted after stashRoot", strings.TrimSpace(m))
		}
	}
	// What Apply writes into the stand-in.
	writeTree(t, s.sysroot, map[string]string{"etc/crypttab": "data UUID=x none luks\n"})

	if err := s.restoreRoot(newDev); err != nil {
		t.Fatal(err)
	}
	if got := fsMagic(t, s.sysroot); got != unix.EXT4_SUPER_MAGIC {
		t.Errorf("after restoreRoot the new root is fs type %#x, want ext4", got)
	}
	for p, want := range map[string]string{"etc/hostname": "pith\n", "etc/crypttab": "data UUID=x none luks\n", MarkerPath: "yes\n", "usr/lib/os-release": "ID=pith\n", "lib/os-release": "ID=pith\n"} {
		if b, err := os.ReadFile(filepath.Join(s.sysroot, p)); err != nil || string(b) != want {
			t.Errorf("%s on the new root: %q, %v; want %q", p, b, err, want)
		}
	}
	if !exists(filepath.Join(s.sysroot, StorageStarted)) {
		t.Errorf("the stage's started marker was not carried over")
	}
	mounts, _ = os.ReadFile("/proc/self/mountinfo")
	if !strings.Contains(string(mounts), " "+s.sysroot+" ") || strings.Contains(string(mounts), " "+s.newRoot+" ") {
		t.Errorf("mounts after restoreRoot:\n%s", mounts)
	}
	// The old ROOT is untouched by the swap (the stage formats it).
	if out, err := exec.Command("e2fsck", "-n", oldDev).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -n on the old ROOT: %v\n%s", err, out)
	}
}
