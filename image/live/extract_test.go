package live

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
)

// TestExtract takes slot A's kernel, initramfs and USR (up to its content
// size) out of a small image laid out as pith build's.
func TestExtract(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mmd", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: make deps installs it", tool)
		}
	}
	const mib = int64(1) << 20
	dir := t.TempDir()
	esp := filepath.Join(dir, "esp.img")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
	}
	run("mkfs.vfat", "-C", esp, "8192")
	os.WriteFile(filepath.Join(dir, "k"), []byte("the kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "i"), []byte("the initramfs"), 0o644)
	run("mmd", "-i", esp, "::pith")
	run("mcopy", "-i", esp, filepath.Join(dir, "k"), "::pith/vmlinuz-a")
	run("mcopy", "-i", esp, filepath.Join(dir, "i"), "::pith/initrd-a")

	img := filepath.Join(dir, "pith.img")
	espBytes, _ := os.ReadFile(esp)
	usr := bytes.Repeat([]byte("squashfs+verity "), 4096)
	f, _ := os.Create(img)
	f.Truncate(32 * mib)
	f.WriteAt(espBytes, 1*mib)
	f.WriteAt(append(append([]byte{}, usr...), "beyond the content"...), 20*mib)
	f.Close()
	m := &manifest.Manifest{Version: "1.2.3", KernelCmdline: map[string]string{"a": "console=ttyS0 pith.slot=a"},
		Disk: manifest.Disk{Partitions: []manifest.Partition{
			{Partition: layout.Partition{Label: layout.LabelESP, Start: 1 * mib, Size: 8 * mib}},
			{Partition: layout.Partition{Label: layout.LabelUSRA, Start: 20 * mib, Size: 8 * mib}, ContentSize: int64(len(usr)), Verity: &manifest.Verity{RootHash: hash}},
		}}}
	out := t.TempDir()
	p, err := Extract(context.Background(), img, m, out)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{p.Kernel: "the kernel", p.Initrd: "the initramfs", p.USR: string(usr)} {
		if got, _ := os.ReadFile(path); string(got) != want {
			t.Errorf("%s: %d bytes, want %d", path, len(got), len(want))
		}
	}
	if p.RootHash != hash || p.Version != "1.2.3" {
		t.Errorf("parts %+v", p)
	}

	m.Disk.Partitions[1].Verity = nil
	if _, err := Extract(context.Background(), img, m, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no dm-verity tree") {
		t.Errorf("an image without verity: %v", err)
	}
}
