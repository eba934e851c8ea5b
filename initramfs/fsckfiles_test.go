package initramfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The files fsckFiles picks from a USR tree run e2fsck alone: copied into an
// empty root and run there with chroot, nothing of the host is reachable.
// The host's own /usr stands in for the image's USR (both Debian).
func TestFsckFilesRunAlone(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/e2fsck"); err != nil {
		t.Fatal("e2fsck not installed: run make deps (package e2fsprogs)")
	}
	files, err := fsckFiles("/usr")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	var names []string
	for _, f := range files {
		names = append(names, f.name)
		b, err := os.ReadFile(f.src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, f.name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, os.FileMode(f.perm)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("e2fsck closure: %s", strings.Join(names, " "))
	for _, want := range []string{"usr/sbin/e2fsck", "libext2fs.so.2", "libc.so.6", "ld-linux"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("closure lacks %s", want)
		}
	}
	out, err := exec.Command("chroot", root, "/usr/sbin/e2fsck", "-V").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "e2fsck") {
		t.Fatalf("e2fsck in a root holding only its closure: %v: %s", err, out)
	}
	if _, err := fsckFiles(t.TempDir()); err == nil {
		t.Error("a USR tree without e2fsck accepted")
	}
}
