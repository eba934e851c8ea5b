package update

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/slot"
	"github.com/pith-os/pith/initramfs/verity"
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
	s, err := slot.Running(d.Cmdline)
	return string(s), err
}

func parseSlot(s string) (slot.Slot, error) { return slot.Parse(s) }

// Invalidate zeroes the slot's gptprio bits, drops a pending trial of it
// and removes its root hash file, so nothing boots the slot, and GRUB does
// not fall back to it, while it is being written.
func (d *DiskSlots) Invalidate(s string) error {
	sl, err := parseSlot(s)
	if err != nil {
		return err
	}
	if err := os.Remove(d.verityPath(s)); err == nil {
		if err := atomicfile.SyncDir(filepath.Dir(d.verityPath(s))); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
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

func (d *DiskSlots) verityPath(s string) string {
	return filepath.Join(d.ESP, filepath.FromSlash(bootloader.VerityCfgPath(s)))
}

// SetVerity checks the slot's written USR against rootHash, the signed
// release's dm-verity root hash, block by block as the kernel will read
// it (every hash block and the root), and only then gives the slot's boot
// entry that hash: pith/verity-<slot>.cfg on the ESP, which grub.cfg reads
// into pith.usrhash=. A release without a root hash is refused: its slot
// could not boot.
func (d *DiskSlots) SetVerity(s, rootHash string) error {
	if _, err := parseSlot(s); err != nil {
		return err
	}
	if rootHash == "" {
		return errors.New("the release has no dm-verity root hash (usr_verity_hash): its USR could not be verified at boot; publish it with a pith release that records one")
	}
	cfg, err := bootloader.VerityCfg(rootHash)
	if err != nil {
		return err
	}
	t, err := d.USRTarget(s)
	if err != nil {
		return err
	}
	f, err := os.Open(t.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	size := t.Limit
	if size == 0 {
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return err
		}
	}
	usr := io.NewSectionReader(f, t.Offset, size)
	sb, err := verity.Find(usr)
	if err != nil {
		return fmt.Errorf("USR-%s as written: %w", strings.ToUpper(s), err)
	}
	if err := verity.Verify(usr, sb, rootHash); err != nil {
		return fmt.Errorf("USR-%s as written does not match the signed dm-verity root hash: %w", strings.ToUpper(s), err)
	}
	// Written beside and renamed, as the kernel and initrd are: the file
	// is either absent (slot not bootable) or complete.
	dst := d.verityPath(s)
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(cfg); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(dst))
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
