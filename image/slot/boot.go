package slot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Running is the slot the machine booted: pith.slot= on the kernel command
// line in the file cmdline ("" means /proc/cmdline).
func Running(cmdline string) (Slot, error) {
	p := cmdline
	if p == "" {
		p = "/proc/cmdline"
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "pith.slot="); ok {
			return Parse(v)
		}
	}
	return "", fmt.Errorf("%s has no pith.slot=; was this machine booted by Pith's GRUB config?", p)
}

// BootDisk finds the whole disk that holds the USR partition named on the
// kernel command line (pith.usr=PARTUUID=...), through udev's by-partuuid
// links and sysfs: /dev/disk/by-partuuid/X -> /dev/vda3, whose sysfs entry
// sits under its disk's (/sys/class/block/vda3 -> .../block/vda/vda3).
// Empty arguments mean the real paths.
func BootDisk(cmdline, byPartUUID, sysClassBlock string) (string, error) {
	if cmdline == "" {
		cmdline = "/proc/cmdline"
	}
	if byPartUUID == "" {
		byPartUUID = "/dev/disk/by-partuuid"
	}
	if sysClassBlock == "" {
		sysClassBlock = "/sys/class/block"
	}
	b, err := os.ReadFile(cmdline)
	if err != nil {
		return "", err
	}
	var uuid string
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "pith.usr=PARTUUID="); ok {
			uuid = strings.ToLower(v)
		}
	}
	if uuid == "" {
		return "", fmt.Errorf("%s has no pith.usr=PARTUUID=; give the boot disk explicitly (--update-disk)", cmdline)
	}
	part, err := filepath.EvalSymlinks(filepath.Join(byPartUUID, uuid))
	if err != nil {
		return "", fmt.Errorf("USR partition %s: %v; give --update-disk", uuid, err)
	}
	sys, err := filepath.EvalSymlinks(filepath.Join(sysClassBlock, filepath.Base(part)))
	if err != nil {
		return "", fmt.Errorf("USR partition %s: %v; give --update-disk", part, err)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err != nil {
		return "", fmt.Errorf("%s is not a partition; give --update-disk", part)
	}
	return filepath.Join(filepath.Dir(part), filepath.Base(filepath.Dir(sys))), nil
}
