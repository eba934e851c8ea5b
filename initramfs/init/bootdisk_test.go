package pithinit

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeDisks points SysBlock and DevDir at a tree with vda (partitions 2
// and 3), vdb (whole), dm-0 over vda3, and their device nodes.
func fakeDisks(t *testing.T) {
	t.Helper()
	base := t.TempDir()
	sys, dev := filepath.Join(base, "sys/block"), filepath.Join(base, "dev")
	writeTree(t, sys, map[string]string{
		"vda/vda2/partition": "2\n", "vda/vda3/partition": "3\n",
		"vdb/queue/logical_block_size": "512\n", "dm-0/slaves/vda3": "",
		// LUKS on an array over vdc and vdd, as storage.raid/luks make.
		"md127/slaves/vdc": "", "md127/slaves/vdd": "", "dm-1/slaves/md127": "", "dm-1/dev": "253:1\n", "vdc/dev": "254:32\n", "vdd/dev": "254:48\n",
	})
	nodes := map[string]string{}
	for _, n := range []string{"vda", "vda2", "vda3", "vdb", "dm-0", "nvme0n1p1", "mapper/crypt", "md127"} {
		nodes[n] = ""
	}
	writeTree(t, dev, nodes)
	if err := os.MkdirAll(filepath.Join(dev, "mapper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../dm-0", filepath.Join(dev, "mapper/data")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dev, "md"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../md127", filepath.Join(dev, "md/data")); err != nil {
		t.Fatal(err)
	}
	// mapper/crypt is a node (libdevmapper without udev), found by number.
	old := blockDevNumber
	blockDevNumber = func(p string) (string, bool) { return "253:1", p == filepath.Join(dev, "mapper/crypt") }
	t.Cleanup(func() { blockDevNumber = old })
	oldSys, oldDev := SysBlock, DevDir
	SysBlock, DevDir = sys, dev
	t.Cleanup(func() { SysBlock, DevDir = oldSys, oldDev })
}

func TestWholeDisks(t *testing.T) {
	fakeDisks(t)
	for _, tc := range []struct {
		dev  string
		want []string
		err  string
	}{
		{"vda2", []string{"vda"}, ""},
		{"vda", []string{"vda"}, ""},
		{"vdb", []string{"vdb"}, ""},
		{"dm-0", []string{"vda"}, ""},
		{"mapper/data", []string{"vda"}, ""},
		{"md/data", []string{"vdc", "vdd"}, ""},
		{"mapper/crypt", []string{"vdc", "vdd"}, ""},
		{"nvme0n1p1", nil, "neither a disk nor a partition"},
	} {
		got, err := wholeDisks(filepath.Join(DevDir, tc.dev))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, %v; want error %q", tc.dev, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.dev, got, err, tc.want)
		}
	}
}

// Two disks of one image hold the same labels: a by-partlabel name is
// refused rather than resolved to whichever disk is read first.
func TestResolveDeviceAmbiguousLabel(t *testing.T) {
	img := makeDisk(t, "64M")
	fakeSys(t, img, 1, 3, 9)
	if p, err := resolveDevice("/dev/disk/by-partlabel/EFI-SYSTEM"); err != nil || p != filepath.Join(DevDir, "vda1") {
		t.Fatalf("one disk: %s, %v", p, err)
	}
	writeTree(t, SysBlock, map[string]string{"vdb/queue/logical_block_size": "512\n", "vdb/vdb1/partition": "1\n"})
	if err := os.Symlink(img, filepath.Join(DevDir, "vdb")); err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{"/dev/disk/by-partlabel/EFI-SYSTEM", "/dev/disk/by-partuuid/" + testEFIUUID} {
		_, err := resolveDevice(dev)
		if err == nil || !strings.Contains(err.Error(), "on 2 disks (vda, vdb)") {
			t.Errorf("%s on two disks: %v", dev, err)
		}
	}
}

// Two virtio disks with one serial (QEMU allows it) are refused, not
// resolved in probe order.
func TestResolveDeviceDuplicateSerial(t *testing.T) {
	fakeDisks(t)
	writeTree(t, SysBlock, map[string]string{"vda/serial": "data1\n", "vdb/serial": "data1\n"})
	for _, id := range []string{"data1", "data1-part1"} {
		_, err := resolveDevice("/dev/disk/by-id/virtio-" + id)
		if err == nil || !strings.Contains(err.Error(), `2 virtio disks have the serial "data1" (vda, vdb)`) {
			t.Errorf("%s on two disks: %v", id, err)
		}
	}
}
