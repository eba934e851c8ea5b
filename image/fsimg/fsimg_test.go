package fsimg

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const epoch = 1700000000

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: run make deps", tool)
		}
	}
}

// tree makes a small source tree; atime differs per call so that copying
// host times would show up as a difference between builds.
func tree(t *testing.T, atime int64) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"pith/platform": "qemu\n", "a/b/c.txt": "hello\n", "top": "x"}
	for p, c := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		return os.Chtimes(p, time.Unix(atime, 0), time.Unix(epoch, 0))
	})
	return dir
}

func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func same(t *testing.T, a, b string) {
	t.Helper()
	x, _ := os.ReadFile(a)
	y, _ := os.ReadFile(b)
	if len(x) == 0 || !bytes.Equal(x, y) {
		t.Errorf("%s and %s differ (%d, %d bytes): not reproducible", a, b, len(x), len(y))
	}
}

func TestVfat(t *testing.T) {
	need(t, "mkfs.vfat", "mcopy", "fsck.vfat")
	src := tree(t, epoch+1)
	dir := t.TempDir()
	files := []File{{filepath.Join(src, "top"), "EFI/BOOT/BOOTX64.EFI"}, {filepath.Join(src, "a/b/c.txt"), "grub/grub.cfg"}}
	for _, name := range []string{"1", "2"} {
		if err := Vfat(context.Background(), filepath.Join(dir, name), 64<<20, "EFI-SYSTEM", 0xCAFE1234, files, epoch); err != nil {
			t.Fatal(err)
		}
		src = tree(t, epoch+7) // different host times for the second build
		files[0].Src, files[1].Src = filepath.Join(src, "top"), filepath.Join(src, "a/b/c.txt")
	}
	img := filepath.Join(dir, "1")
	same(t, img, filepath.Join(dir, "2"))
	output(t, "fsck.vfat", "-n", img)
	if got := output(t, "mtype", "-i", img, "::/grub/grub.cfg"); got != "hello\n" {
		t.Errorf("grub.cfg content %q", got)
	}
	if out := output(t, "blkid", "-p", "-o", "export", img); !strings.Contains(out, "UUID=CAFE-1234") || !strings.Contains(out, "LABEL=EFI-SYSTEM") {
		t.Errorf("blkid: %s", out)
	}
	if VfatSerial(0xCAFE1234) != "CAFE-1234" {
		t.Error(VfatSerial(0xCAFE1234))
	}
}

func TestExt4(t *testing.T) {
	need(t, "mkfs.ext4", "debugfs", "e2fsck")
	dir := t.TempDir()
	const uuid, seed = "0E4A7A44-1111-4222-8333-444455556666", "5A0E6A44-1111-4222-8333-444455556666"
	for i, atime := range []int64{epoch + 1, epoch + 99} {
		out := filepath.Join(dir, []string{"1", "2"}[i])
		if err := Ext4(context.Background(), out, 32<<20, "OEM", uuid, seed, tree(t, atime), epoch); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "1")
	same(t, img, filepath.Join(dir, "2"))
	output(t, "e2fsck", "-fn", img)
	if got := output(t, "debugfs", "-R", "cat /pith/platform", img); !strings.Contains(got, "qemu") {
		t.Errorf("platform file: %q", got)
	}
	stat := output(t, "debugfs", "-R", "stat /a/b/c.txt", img)
	for _, want := range []string{"User:     0   Group:     0", "atime: 0x6553f100", "ctime: 0x6553f100"} {
		if !strings.Contains(stat, want) {
			t.Errorf("stat lacks %q:\n%s", want, stat)
		}
	}
	if out := output(t, "blkid", "-p", "-o", "export", img); !strings.Contains(out, "LABEL=OEM") || !strings.Contains(out, "UUID="+strings.ToLower(uuid)) {
		t.Errorf("blkid: %s", out)
	}
	// An empty filesystem (ROOT) is fine too.
	if err := Ext4(context.Background(), filepath.Join(dir, "root"), 32<<20, "ROOT", uuid, seed, "", epoch); err != nil {
		t.Fatal(err)
	}
	output(t, "e2fsck", "-fn", filepath.Join(dir, "root"))
}

func TestSquashfs(t *testing.T) {
	need(t, "mksquashfs", "unsquashfs")
	dir := t.TempDir()
	var last int
	for i, atime := range []int64{epoch + 1, epoch + 99} {
		out := filepath.Join(dir, []string{"1", "2"}[i])
		err := Squashfs(context.Background(), out, tree(t, atime), epoch, SquashfsOptions{Level: 3, Progress: func(p int) { last = p }})
		if err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "1")
	same(t, img, filepath.Join(dir, "2"))
	if s := output(t, "unsquashfs", "-s", img); !strings.Contains(s, "Compression zstd") {
		t.Errorf("unsquashfs -s:\n%s", s)
	}
	if l := output(t, "unsquashfs", "-l", img); !strings.Contains(l, "squashfs-root/pith/platform") {
		t.Errorf("unsquashfs -l:\n%s", l)
	}
	if last != 100 {
		t.Errorf("last progress %d%%, want 100", last)
	}
	if err := Squashfs(context.Background(), filepath.Join(dir, "x"), filepath.Join(dir, "missing"), epoch, SquashfsOptions{}); err == nil {
		t.Error("missing source accepted")
	}
}
