package pithinit

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Device is a partition found on a disk.
type Device struct {
	Path       string // /dev/vda3
	Disk       string // /dev/vda
	SectorSize int64
	Partition  Partition
}

// SysBlock is where the kernel lists block devices; a variable so tests
// can point it at a fake tree.
var SysBlock = "/sys/block"

// DevDir holds the device nodes (devtmpfs).
var DevDir = "/dev"

// FindDevice looks for a partition matching s on every disk (no udev: it
// reads each disk's GPT itself).
func FindDevice(s Spec) (*Device, error) {
	if s.Kind == "path" {
		if _, err := os.Stat(s.Value); err != nil {
			return nil, err
		}
		return &Device{Path: s.Value}, nil
	}
	disks, err := os.ReadDir(SysBlock)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range disks {
		names = append(names, d.Name())
	}
	sort.Strings(names)
	for _, disk := range names {
		if strings.HasPrefix(disk, "loop") || strings.HasPrefix(disk, "ram") || strings.HasPrefix(disk, "dm-") {
			continue
		}
		ss := readInt(filepath.Join(SysBlock, disk, "queue/logical_block_size"), 512)
		f, err := os.Open(filepath.Join(DevDir, disk))
		if err != nil {
			continue
		}
		t, err := ReadGPT(f, ss)
		f.Close()
		if err != nil {
			continue
		}
		p, ok := t.Find(s)
		if !ok {
			continue
		}
		part, err := partitionName(disk, p.Number)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(DevDir, part)
		if _, err := os.Stat(path); err != nil {
			// sysfs shows a new partition a moment before devtmpfs
			// has its node: not there yet.
			return nil, err
		}
		return &Device{Path: path, Disk: filepath.Join(DevDir, disk), SectorSize: ss, Partition: p}, nil
	}
	return nil, os.ErrNotExist
}

// partitionName finds the kernel's name for partition n of disk (vda3,
// nvme0n1p3) in sysfs, which is also how the device node is named.
func partitionName(disk string, n int) (string, error) {
	ents, err := os.ReadDir(filepath.Join(SysBlock, disk))
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), disk) {
			continue
		}
		if readInt(filepath.Join(SysBlock, disk, e.Name(), "partition"), -1) == int64(n) {
			return e.Name(), nil
		}
	}
	return "", fmt.Errorf("partition %d of %s is in the GPT but not known to the kernel (no %s/%s/*/partition = %d)", n, disk, SysBlock, disk, n)
}

func readInt(path string, def int64) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return def
	}
	return v
}

// WaitDevice polls for s until it appears or wait passes; block devices
// appear asynchronously after their driver loads.
func WaitDevice(s Spec, wait time.Duration, logf func(string, ...any)) (*Device, error) {
	deadline := time.Now().Add(wait)
	announced := false
	for {
		d, err := FindDevice(s)
		if err == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s did not appear within %s (disks seen: %s)", s, wait, seenDisks())
		}
		if !announced && logf != nil {
			logf("waiting up to %s for %s", wait, s)
			announced = true
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func seenDisks() string {
	ents, err := os.ReadDir(SysBlock)
	if err != nil {
		return "none: " + err.Error()
	}
	var n []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "loop") && !strings.HasPrefix(e.Name(), "ram") {
			n = append(n, e.Name())
		}
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// FSType recognises the filesystems the init mounts from their magic.
func FSType(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 4096)
	n, err := f.ReadAt(b, 0)
	if n < 2048 {
		return "", fmt.Errorf("reading %s: %v", path, err)
	}
	switch {
	case string(b[0:4]) == "hsqs":
		return "squashfs", nil
	case binary.LittleEndian.Uint32(b[1024:]) == 0xE0F5E1E2:
		return "erofs", nil
	case binary.LittleEndian.Uint16(b[1080:]) == 0xEF53:
		return "ext4", nil
	}
	return "", fmt.Errorf("%s holds no squashfs, erofs or ext4 filesystem", path)
}

// ext4Geometry reads an ext4 superblock's block size and block count.
func ext4Geometry(path string) (blockSize, blocks uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		return 0, 0, err
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return 0, 0, fmt.Errorf("%s: no ext4 superblock", path)
	}
	blockSize = 1024 << binary.LittleEndian.Uint32(sb[0x18:])
	blocks = uint64(binary.LittleEndian.Uint32(sb[0x4:]))
	const incompat64bit = 0x80
	if binary.LittleEndian.Uint32(sb[0x60:])&incompat64bit != 0 {
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	return blockSize, blocks, nil
}
