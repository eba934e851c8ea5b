package pithinit

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// wholeDisks returns the kernel names of the disks holding the block
// device dev: the disk itself, a partition's disk (sysfs lists partitions
// under their disk: /sys/block/vda/vda2), or, for a device-mapper or md
// device, the disks under its slaves. A symlink (/dev/mapper/x) is
// followed to its node first.
func wholeDisks(dev string) ([]string, error) {
	if p, err := filepath.EvalSymlinks(dev); err == nil && strings.HasPrefix(p, DevDir+"/") {
		dev = p
	}
	name := filepath.Base(dev)
	if !exists(filepath.Join(SysBlock, name)) {
		// A node named otherwise than in sysfs: without udev,
		// cryptsetup's libdevmapper makes /dev/mapper/<name> a node,
		// not a link to dm-N.
		if n := sysNameByNumber(dev); n != "" {
			name = n
		}
	}
	return disksOfName(name, 0)
}

// sysNameByNumber returns the sysfs name of the block device node p,
// found by its device number, or "".
func sysNameByNumber(p string) string {
	num, ok := blockDevNumber(p)
	if !ok {
		return ""
	}
	ents, _ := os.ReadDir(SysBlock)
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(SysBlock, e.Name(), "dev")); err == nil && strings.TrimSpace(string(b)) == num {
			return e.Name()
		}
	}
	return ""
}

// blockDevNumber returns "major:minor" of a block device node; a
// variable so tests need no real node.
var blockDevNumber = func(p string) (string, bool) {
	var st unix.Stat_t
	if unix.Stat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", false
	}
	return fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))), true
}

func disksOfName(name string, depth int) ([]string, error) {
	if depth > 8 || name == "." || name == "/" {
		return nil, fmt.Errorf("%s: not a block device this init can trace to a disk", name)
	}
	if _, err := os.Stat(filepath.Join(SysBlock, name)); err == nil {
		slaves, _ := os.ReadDir(filepath.Join(SysBlock, name, "slaves"))
		if len(slaves) == 0 {
			return []string{name}, nil
		}
		var out []string
		for _, s := range slaves {
			d, err := disksOfName(s.Name(), depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, d...)
		}
		return out, nil
	}
	disks, err := os.ReadDir(SysBlock)
	if err != nil {
		return nil, err
	}
	for _, d := range disks {
		if exists(filepath.Join(SysBlock, d.Name(), name, "partition")) {
			return []string{d.Name()}, nil
		}
	}
	return nil, fmt.Errorf("%s is neither a disk nor a partition in %s", name, SysBlock)
}

// matchingDisks lists the disks whose GPT has a partition matching s.
// FindDevice takes the first; for a device to format, a name on two disks
// (a copy of the boot disk, two disks of one image) is refused instead.
func matchingDisks(s Spec) []string {
	var out []string
	ents, _ := os.ReadDir(SysBlock)
	for _, e := range ents {
		disk := e.Name()
		if strings.HasPrefix(disk, "loop") || strings.HasPrefix(disk, "ram") || strings.HasPrefix(disk, "dm-") {
			continue
		}
		f, err := os.Open(filepath.Join(DevDir, disk))
		if err != nil {
			continue
		}
		t, err := ReadGPT(f, readInt(filepath.Join(SysBlock, disk, "queue/logical_block_size"), 512))
		f.Close()
		if err != nil {
			continue
		}
		if _, ok := t.Find(s); ok {
			out = append(out, disk)
		}
	}
	sort.Strings(out)
	return out
}
