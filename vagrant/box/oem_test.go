package box

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/disk"
	"github.com/pith-os/pith/image/fsimg"
	"github.com/pith-os/pith/image/manifest"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// realImage makes a small qcow2 disk laid out like Pith's: a GPT with an
// ESP and an ext4 OEM partition (number 6) holding pith/platform, made by
// the image builder's own ext4 recipe.
func realImage(t *testing.T, dir string) string {
	t.Helper()
	raw := filepath.Join(dir, "pith.img")
	run(t, "truncate", "-s", "64M", raw)
	run(t, "sgdisk", "-n", "1:2048:+8M", "-t", "1:ef00", "-c", "1:EFI-SYSTEM",
		"-n", "6:0:+16M", "-t", "6:8300", "-c", "6:OEM", raw)
	tree := filepath.Join(dir, "oemtree")
	os.MkdirAll(filepath.Join(tree, "pith"), 0o755)
	os.WriteFile(filepath.Join(tree, "pith", "platform"), []byte("vagrant\n"), 0o644)
	oem := filepath.Join(dir, "oem.ext4")
	if err := fsimg.Ext4(context.Background(), oem, 16<<20, "OEM", "44e1cb14-4f8e-5481-a2d5-9cf16c81e972", "27e19499-0282-5a15-9f15-5addba4e7ba4", tree, 1767225600); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(raw)
	part, err := findGPTPartition(f, "OEM")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	run(t, "dd", "if="+oem, "of="+raw, "bs=512", "seek="+itoa(part.FirstLBA), "conv=notrunc", "status=none")
	q := filepath.Join(dir, "pith.qcow2")
	if err := disk.Qcow2(context.Background(), raw, q, nil); err != nil {
		t.Fatal(err)
	}
	return q
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestBuildOEM packages a real qcow2 with the OEM config and checks the box's
// disk from outside with e2fsprogs: the OEM filesystem is clean, keeps its
// label, UUID and old files, and holds the cloud-config; the other
// partitions are untouched; two builds give the same bytes.
func TestBuildOEM(t *testing.T) {
	for _, tool := range []string{"qemu-img", "sgdisk", "debugfs", "mkfs.ext4", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps): %v", tool, err)
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	img := realImage(t, dir)
	m := &manifest.Manifest{Schema: 1, Version: "0.2.0", Platform: "vagrant", Inputs: manifest.Inputs{SourceDateEpoch: 1767225600}}
	b, _ := m.Encode()
	os.WriteFile(filepath.Join(dir, manifest.FileName), b, 0o644)
	before, _ := os.ReadFile(img)

	out := filepath.Join(dir, "out", "pith.box")
	if _, err := Build(ctx, Options{Image: img, Out: out, OEM: true}); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(img); !bytes.Equal(before, after) {
		t.Error("the source image was changed")
	}
	files := readBox(t, out)
	if files[1].hdr.Name != "box.img" {
		t.Fatalf("entries %v", files)
	}
	boxImg := filepath.Join(dir, "box.img")
	os.WriteFile(boxImg, files[1].data, 0o644)
	run(t, "qemu-img", "check", boxImg)
	raw := filepath.Join(dir, "box.raw")
	run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", boxImg, raw)
	run(t, "sgdisk", "-v", raw)
	f, _ := os.Open(raw)
	part, err := findGPTPartition(f, "OEM")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	oem := filepath.Join(dir, "box-oem.ext4")
	run(t, "dd", "if="+raw, "of="+oem, "bs=512", "skip="+itoa(part.FirstLBA), "count="+itoa(uint64(part.Size/512)), "status=none")
	run(t, "e2fsck", "-fn", oem)
	if got := run(t, "debugfs", "-R", "cat /cloud-config.yml", oem); !strings.Contains(got, OEMCloudConfig()) {
		t.Errorf("cloud-config.yml on OEM:\n%s", got)
	}
	if got := run(t, "debugfs", "-R", "cat /pith/platform", oem); !strings.Contains(got, "vagrant\n") {
		t.Errorf("pith/platform lost: %q", got)
	}
	sb := run(t, "dumpe2fs", "-h", oem)
	for _, want := range []string{"Filesystem volume name:   OEM", "Filesystem UUID:          44e1cb14-4f8e-5481-a2d5-9cf16c81e972", "Directory Hash Seed:      27e19499-0282-5a15-9f15-5addba4e7ba4"} {
		if !strings.Contains(sb, want) {
			t.Errorf("superblock lacks %q:\n%s", want, sb)
		}
	}
	// Outside OEM the disk is as it was.
	origRaw := filepath.Join(dir, "pith.img")
	a, _ := os.ReadFile(origRaw)
	c, _ := os.ReadFile(raw)
	if len(a) != len(c) || !bytes.Equal(a[:part.Offset], c[:part.Offset]) || !bytes.Equal(a[part.Offset+part.Size:], c[part.Offset+part.Size:]) {
		t.Error("bytes outside the OEM partition changed")
	}

	again := filepath.Join(dir, "again", "pith.box")
	if _, err := Build(ctx, Options{Image: img, Out: again, OEM: true}); err != nil {
		t.Fatal(err)
	}
	x, _ := os.ReadFile(out)
	y, _ := os.ReadFile(again)
	if !bytes.Equal(x, y) {
		t.Error("two boxes of the same image differ")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "out", ".*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestBuildOEMRejectsNonPith(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "x.img")
	run(t, "truncate", "-s", "8M", raw)
	run(t, "sgdisk", "-n", "1:2048:0", "-c", "1:DATA", raw)
	q := filepath.Join(dir, "x.qcow2")
	run(t, "qemu-img", "convert", "-O", "qcow2", raw, q)
	_, err := Build(context.Background(), Options{Image: q, Out: filepath.Join(dir, "x.box"), Version: "1.0.0", OEM: true})
	if err == nil || !strings.Contains(err.Error(), "no partition labelled OEM") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.box")); err == nil {
		t.Error("a box was written")
	}
}
