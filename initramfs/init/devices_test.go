package pithinit

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeSys builds a /sys/block and /dev holding one virtio disk (the image
// file) with the partitions the kernel would list.
func fakeSys(t *testing.T, disk string, parts ...int) {
	t.Helper()
	base := t.TempDir()
	sys, dev := filepath.Join(base, "sys/block"), filepath.Join(base, "dev")
	for _, d := range []string{filepath.Join(sys, "vda/queue"), filepath.Join(sys, "loop0"), dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeTree(t, sys, map[string]string{"vda/queue/logical_block_size": "512\n"})
	for _, n := range parts {
		name := "vda" + itoa(n)
		writeTree(t, sys, map[string]string{"vda/" + name + "/partition": itoa(n) + "\n"})
	}
	if err := os.Symlink(disk, filepath.Join(dev, "vda")); err != nil {
		t.Fatal(err)
	}
	for _, n := range parts {
		if err := os.WriteFile(filepath.Join(dev, "vda"+strconv.Itoa(n)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	oldSys, oldDev := SysBlock, DevDir
	SysBlock, DevDir = sys, dev
	t.Cleanup(func() { SysBlock, DevDir = oldSys, oldDev })
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestFindDevice(t *testing.T) {
	disk := makeDisk(t, "64M")
	fakeSys(t, disk, 1, 3, 9)
	tests := []struct {
		spec, want string
		number     int
	}{
		{"PARTUUID=" + testUsrUUID, "vda3", 3},
		{"PARTUUID=" + strings.ToLower(testRootUUID), "vda9", 9},
		{"PARTLABEL=EFI-SYSTEM", "vda1", 1},
	}
	for _, tt := range tests {
		s, err := parseSpec("pith.usr", tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		d, err := FindDevice(s)
		if err != nil {
			t.Fatalf("%s: %v", tt.spec, err)
		}
		if d.Path != filepath.Join(DevDir, tt.want) || d.Disk != filepath.Join(DevDir, "vda") || d.Partition.Number != tt.number {
			t.Errorf("%s: got %s on %s (partition %d), want %s", tt.spec, d.Path, d.Disk, d.Partition.Number, tt.want)
		}
	}
	if _, err := FindDevice(Spec{Kind: "PARTUUID", Value: "00000000-0000-0000-0000-000000000001"}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unknown PARTUUID: err = %v, want not-exist", err)
	}
}

func TestFindDeviceKernelMissesPartition(t *testing.T) {
	disk := makeDisk(t, "64M")
	fakeSys(t, disk, 1, 3) // the kernel has not (yet) seen partition 9
	_, err := FindDevice(Spec{Kind: "PARTLABEL", Value: "ROOT"})
	if err == nil || !strings.Contains(err.Error(), "partition 9 of vda") {
		t.Errorf("err = %v, want one naming partition 9 of vda", err)
	}
}

func TestFindDeviceWaitsForNode(t *testing.T) {
	disk := makeDisk(t, "64M")
	fakeSys(t, disk, 1, 3, 9)
	if err := os.Remove(filepath.Join(DevDir, "vda9")); err != nil {
		t.Fatal(err)
	}
	if _, err := FindDevice(Spec{Kind: "PARTLABEL", Value: "ROOT"}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want not-exist until devtmpfs has the node", err)
	}
}

func TestWaitDeviceTimesOut(t *testing.T) {
	fakeSys(t, makeDisk(t, "64M"), 1, 3, 9)
	var logged []string
	_, err := WaitDevice(Spec{Kind: "PARTLABEL", Value: "USR-B"}, 300*time.Millisecond, func(f string, a ...any) { logged = append(logged, f) })
	if err == nil || !strings.Contains(err.Error(), "did not appear within 300ms") || !strings.Contains(err.Error(), "vda") {
		t.Errorf("err = %v, want a timeout naming the disks seen", err)
	}
	if len(logged) != 1 {
		t.Errorf("logged %d waiting lines, want 1", len(logged))
	}
}

func TestFSTypeAndExt4Geometry(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeTree(t, src, map[string]string{"lib/systemd/systemd": "x"})
	sq := filepath.Join(dir, "usr.sqfs")
	runCmd(t, "mksquashfs", src, sq, "-comp", "zstd", "-noappend", "-quiet", "-no-progress")
	ext := filepath.Join(dir, "root.ext4")
	runCmd(t, "truncate", "-s", "40M", ext)
	runCmd(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "ROOT", ext)
	junk := filepath.Join(dir, "junk")
	runCmd(t, "truncate", "-s", "1M", junk)
	for path, want := range map[string]string{sq: "squashfs", ext: "ext4"} {
		if got, err := FSType(path); err != nil || got != want {
			t.Errorf("FSType(%s) = %q, %v; want %s", filepath.Base(path), got, err, want)
		}
	}
	if _, err := FSType(junk); err == nil {
		t.Error("FSType of zeros: want an error")
	}
	bs, blocks, err := ext4Geometry(ext)
	if err != nil || bs != 4096 || blocks != 40<<20/4096 {
		t.Errorf("ext4Geometry = %d, %d, %v; want 4096, %d", bs, blocks, err, 40<<20/4096)
	}
	if _, _, err := ext4Geometry(sq); err == nil {
		t.Error("ext4Geometry of squashfs: want an error")
	}
}
