package kmod

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pith-os/pith/initramfs/internal/kmodtest"
)

const sampleDep = `kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko
kernel/drivers/md/dm-bufio.ko:
kernel/drivers/md/dm-mod.ko:
kernel/fs/fat/vfat.ko.xz: kernel/fs/fat/fat.ko.xz
kernel/fs/fat/fat.ko.xz:
`

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"dm-verity":                         "dm_verity",
		"kernel/drivers/md/dm-verity.ko":    "dm_verity",
		"kernel/fs/fat/vfat.ko.xz":          "vfat",
		"nls_iso8859-1.ko.zst":              "nls_iso8859_1",
		"virtio_blk":                        "virtio_blk",
		"/lib/modules/x/crc32c-intel.ko.gz": "crc32c_intel",
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolve(t *testing.T) {
	d, err := ParseDep(strings.NewReader(sampleDep))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		wanted        []string
		order, absent []string
	}{
		{"deps first", []string{"virtio_blk"}, []string{"virtio_ring", "virtio", "virtio_blk"}, nil},
		{"shared deps once", []string{"virtio_pci", "virtio-blk"},
			[]string{"virtio_pci_modern_dev", "virtio_ring", "virtio", "virtio_pci", "virtio_blk"}, nil},
		{"dash names and builtins", []string{"dm-verity", "ext4", "vfat"},
			[]string{"dm_bufio", "dm_mod", "dm_verity", "fat", "vfat"}, []string{"ext4"}},
		{"nothing", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			order, absent, err := d.Resolve(tt.wanted)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(order, tt.order) || !reflect.DeepEqual(absent, tt.absent) {
				t.Errorf("Resolve(%v) = %v, %v; want %v, %v", tt.wanted, order, absent, tt.order, tt.absent)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	for name, dep := range map[string]string{
		"cycle":       "a.ko: b.ko\nb.ko: a.ko\n",
		"missing dep": "a.ko: b.ko\n", // b.ko has no line of its own: its deps are unknown but it exists
	} {
		d, err := ParseDep(strings.NewReader(dep))
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = d.Resolve([]string{"a"})
		if name == "cycle" && (err == nil || !strings.Contains(err.Error(), "cycle")) {
			t.Errorf("%s: err = %v, want a cycle error", name, err)
		}
		if name == "missing dep" && err != nil {
			t.Errorf("%s: a dependency listed only on the right-hand side must resolve: %v", name, err)
		}
	}
	if _, err := ParseDep(strings.NewReader("no colon here\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("malformed line: err = %v, want one naming line 1", err)
	}
}

func TestWriteDepRoundTrip(t *testing.T) {
	d, err := ParseDep(strings.NewReader(sampleDep))
	if err != nil {
		t.Fatal(err)
	}
	order, _, err := d.Resolve([]string{"dm_verity", "virtio_blk"})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := d.WriteDep(&b, order); err != nil {
		t.Fatal(err)
	}
	d2, err := ParseDep(&b)
	if err != nil {
		t.Fatal(err)
	}
	order2, _, err := d2.Resolve([]string{"dm_verity", "virtio_blk"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(order, order2) {
		t.Errorf("after round trip: %v, want %v", order2, order)
	}
	if len(d2.Path) != len(order) {
		t.Errorf("written modules.dep lists %d modules, want only the %d resolved", len(d2.Path), len(order))
	}
}

func TestLoadFromModinfo(t *testing.T) {
	dir := t.TempDir()
	kmodtest.WriteTree(t, dir)
	d, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	order, absent, err := d.Resolve([]string{"virtio_blk", "dm_verity", "squashfs"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"virtio_ring", "virtio", "virtio_blk", "dm_bufio", "dm_mod", "dm_verity"}
	if !reflect.DeepEqual(order, want) || !reflect.DeepEqual(absent, []string{"squashfs"}) {
		t.Errorf("order %v absent %v; want %v [squashfs]", order, absent, want)
	}
	if got := d.Path["virtio_blk"]; got != "kernel/drivers/block/virtio_blk.ko.xz" {
		t.Errorf("path of virtio_blk = %q", got)
	}
	// Each compressed module reads back as its ELF bytes.
	for _, m := range order {
		b, err := ReadModule(filepath.Join(dir, d.Path[m]))
		if err != nil || !bytes.HasPrefix(b, []byte("\x7fELF")) {
			t.Errorf("ReadModule(%s): %v (starts %q)", m, err, b[:min(4, len(b))])
		}
	}
}

func TestLoadPrefersModulesDep(t *testing.T) {
	dir := t.TempDir()
	kmodtest.WriteTree(t, dir)
	// modules.dep wins over modinfo: here it invents a dependency.
	dep := "kernel/drivers/md/dm-mod.ko: kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio_ring.ko:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	order, _, err := d.Resolve([]string{"dm_mod"})
	if err != nil || !reflect.DeepEqual(order, []string{"virtio_ring", "dm_mod"}) {
		t.Errorf("order %v err %v, want modules.dep's [virtio_ring dm_mod]", order, err)
	}
}

func TestLoadEmptyDir(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no kernel modules") {
		t.Errorf("err = %v, want 'no kernel modules'", err)
	}
}
