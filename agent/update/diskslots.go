package update

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/slot"
)

// DiskSlots implements Slots with image/slot on the machine's boot disk:
// gptprio bits on USR-A/USR-B, grubenv on the ESP, kernels and initrds as
// pith/vmlinuz-{a,b} and pith/initrd-{a,b} on the mounted ESP.
type DiskSlots struct {
	// Disk is the whole-disk device (/dev/vda) or, for tests and offline
	// use, a disk image file.
	Disk string
	// ESP is where the EFI system partition is mounted (holds grubenv).
	ESP string
	// Cmdline is read for pith.slot= (default /proc/cmdline).
	Cmdline string
	// ByPartUUID is udev's directory of partition links (default
	// /dev/disk/by-partuuid).
	ByPartUUID string
}

// envPath is GRUB's environment block: grub/grubenv on the ESP, where
// the builder puts it and grub.cfg's load_env/save_env read it.
func (d *DiskSlots) envPath() string { return filepath.Join(d.ESP, slot.EnvPathOnESP) }

// Running reads pith.slot= from the kernel command line.
func (d *DiskSlots) Running() (string, error) {
	p := d.Cmdline
	if p == "" {
		p = "/proc/cmdline"
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "pith.slot="); ok {
			s, err := slot.Parse(v)
			return string(s), err
		}
	}
	return "", fmt.Errorf("%s has no pith.slot=; was this machine booted by Pith's GRUB config?", p)
}

func parseSlot(s string) (slot.Slot, error) { return slot.Parse(s) }

// Invalidate zeroes the slot's gptprio bits and drops a pending trial of
// it, so nothing boots the slot while it is being written.
func (d *DiskSlots) Invalidate(s string) error {
	sl, err := parseSlot(s)
	if err != nil {
		return err
	}
	env, err := slot.ReadEnvFile(d.envPath())
	if err != nil {
		return err
	}
	if env.Get(slot.KeyNext) == s {
		env.Set(slot.KeyNext, "")
		if err := slot.WriteEnvFile(d.envPath(), env); err != nil {
			return err
		}
	}
	return slot.WritePrio(d.Disk, sl, slot.Prio{})
}

// USRTarget is the slot's partition: its device node on a block device
// (udev's by-partuuid link, else the kernel's name), or its byte range in
// a disk image file.
func (d *DiskSlots) USRTarget(s string) (channels.Target, error) {
	sl, err := parseSlot(s)
	if err != nil {
		return channels.Target{}, err
	}
	parts, err := slot.ReadParts(d.Disk)
	if err != nil {
		return channels.Target{}, err
	}
	part := parts[sl]
	st, err := os.Stat(d.Disk)
	if err != nil {
		return channels.Target{}, err
	}
	if st.Mode().IsRegular() {
		return imagePartition(d.Disk, part.Number)
	}
	dir := d.ByPartUUID
	if dir == "" {
		dir = "/dev/disk/by-partuuid"
	}
	if link := filepath.Join(dir, strings.ToLower(part.PartUUID)); fileExists(link) {
		return channels.Target{Path: link}, nil
	}
	// /dev/vda -> /dev/vda4, /dev/nvme0n1 -> /dev/nvme0n1p4.
	sep := ""
	if last := d.Disk[len(d.Disk)-1]; last >= '0' && last <= '9' {
		sep = "p"
	}
	dev := fmt.Sprintf("%s%s%d", d.Disk, sep, part.Number)
	if !fileExists(dev) {
		return channels.Target{}, fmt.Errorf("no device for %s (partition %d of %s, PARTUUID %s)", sl.Label(), part.Number, d.Disk, part.PartUUID)
	}
	return channels.Target{Path: dev}, nil
}

func imagePartition(img string, number int) (channels.Target, error) {
	disk, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return channels.Target{}, err
	}
	defer disk.Close()
	pt, err := disk.GetPartitionTable()
	if err != nil {
		return channels.Target{}, err
	}
	t, ok := pt.(*gpt.Table)
	if !ok {
		return channels.Target{}, fmt.Errorf("%s: not GPT", img)
	}
	for _, p := range t.Partitions {
		if p.Index == number {
			ss := int64(t.LogicalSectorSize)
			if ss == 0 {
				ss = 512
			}
			return channels.Target{Path: img, Offset: int64(p.Start) * ss, Limit: int64(p.Size)}, nil
		}
	}
	return channels.Target{}, fmt.Errorf("%s: no partition %d", img, number)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// KernelPath is pith/vmlinuz-<slot> on the ESP.
func (d *DiskSlots) KernelPath(s string) string {
	return filepath.Join(d.ESP, "pith", "vmlinuz-"+s)
}

// InitrdPath is pith/initrd-<slot> on the ESP.
func (d *DiskSlots) InitrdPath(s string) string {
	return filepath.Join(d.ESP, "pith", "initrd-"+s)
}

// SetTrial arranges a one-time trial boot of the slot.
func (d *DiskSlots) SetTrial(s string) error {
	sl, err := parseSlot(s)
	if err != nil {
		return err
	}
	return slot.SetTrial(d.Disk, d.envPath(), sl)
}

// MarkGood makes the slot the default.
func (d *DiskSlots) MarkGood(s string) error {
	sl, err := parseSlot(s)
	if err != nil {
		return err
	}
	return slot.MarkGood(d.Disk, d.envPath(), sl)
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
