package pithinit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The runner finds tools in the new root's /usr, not in the initramfs's
// PATH, and runs them chrooted there ("/" here: the build machine).
func TestChrootRunner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	if _, err := os.Stat("/usr/sbin/blkid"); err != nil {
		t.Skip("no /usr/sbin/blkid on this machine")
	}
	t.Setenv("PATH", t.TempDir()) // nothing found through PATH
	out, err := chrootRunner{root: "/"}.Run("blkid", "--version")
	if err != nil || !strings.Contains(string(out), "blkid from util-linux") {
		t.Fatalf("blkid --version: %v: %s", err, out)
	}
	_, err = chrootRunner{root: t.TempDir()}.Run("mkfs.xfs", "/dev/null")
	if err == nil || !strings.Contains(err.Error(), "not in this image's /usr") {
		t.Fatalf("a tool missing from the root: %v", err)
	}
	var ee *exec.ExitError
	if _, err := (chrootRunner{root: "/"}).Run("blkid", "-p", filepath.Join(t.TempDir(), "none")); err == nil || !errors.As(err, &ee) {
		t.Fatalf("blkid on a missing file: %v, want its exit status", err)
	}
}

func TestStorageMarkers(t *testing.T) {
	root := t.TempDir()
	if err := checkStorageMarkers(root); err != nil {
		t.Fatalf("no markers: %v", err)
	}
	if err := writeMarker(filepath.Join(root, StorageStarted), ""); err != nil {
		t.Fatal(err)
	}
	err := checkStorageMarkers(root)
	var stop *StopError
	if !errors.As(err, &stop) || !strings.Contains(err.Error(), "half-provisioned") {
		t.Fatalf("started without done: %v, want a StopError", err)
	}
	if err := writeMarker(filepath.Join(root, StorageDone), "sum\n"); err != nil {
		t.Fatal(err)
	}
	if err := checkStorageMarkers(root); err != nil {
		t.Fatalf("started and done: %v", err)
	}
}
