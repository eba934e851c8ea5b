// Package storage applies an Ignition config's storage.disks and
// storage.filesystems in the initramfs, on first boot, before the switch
// to the real root, as Ignition's disks stage does on Fedora CoreOS and
// Flatcar: partitions are created on the named disks (GPT, in Go through
// go-diskfs), filesystems made with the mkfs tools of the slot's verified
// USR, and a mount (or swap) unit written into ROOT for every filesystem
// with a path, so systemd mounts it on every boot before the first-boot
// stage writes storage.files (which then land on it).
//
// It fails closed: the first error stops; the caller stops the boot.
// storage.raid and storage.luks are refused (not implemented yet).
package storage

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
)

// Formats are the filesystems Pith makes, with the USR tool for each.
var Formats = map[string]string{
	"ext4": "mkfs.ext4",
	"xfs":  "mkfs.xfs",
	"vfat": "mkfs.vfat",
	"swap": "mkswap",
}

// Plan is what a config asks of the disks, checked, with Ignition's
// defaults filled in.
type Plan struct {
	Disks       []Disk
	Filesystems []Filesystem
}

// Empty reports whether the config asks nothing of the disks.
func (p *Plan) Empty() bool { return len(p.Disks) == 0 && len(p.Filesystems) == 0 }

// Disk is one storage.disks entry.
type Disk struct {
	Device     string
	WipeTable  bool
	Partitions []Partition
}

// Partition is one partition of a Disk. Number 0 means "by label, or the
// first free number"; a nil StartMiB means the first free aligned sector,
// a nil or zero SizeMiB the rest of that free space.
type Partition struct {
	Number      int
	Label       *string
	StartMiB    *int
	SizeMiB     *int
	TypeGUID    string
	GUID        string
	WipeEntry   bool
	ShouldExist bool
}

// Filesystem is one storage.filesystems entry.
type Filesystem struct {
	Device, Format, Path, Label, UUID string
	Wipe                              bool
	Options, MountOptions             []string
}

// Problem is one refusal, at a path of the config ("storage",
// "filesystems", 0, "path").
type Problem struct {
	Path []any
	Msg  string
}

func (p Problem) Error() string {
	var s []string
	for _, e := range p.Path {
		s = append(s, fmt.Sprint(e))
	}
	return strings.Join(s, ".") + ": " + p.Msg
}

// FromConfig checks what Pith can apply and returns the plan, or every
// refusal (each a Problem naming its config path, so pith validate can
// show line:col and the console the path).
func FromConfig(cfg *igntypes.Config) (*Plan, error) {
	var errs []error
	var at []any
	bad := func(format string, args ...any) {
		errs = append(errs, Problem{Path: append([]any(nil), at...), Msg: fmt.Sprintf(format, args...)})
	}
	if len(cfg.Storage.Raid) > 0 {
		at = []any{"storage", "raid"}
		bad("Pith does not build RAID arrays yet")
	}
	if len(cfg.Storage.Luks) > 0 {
		at = []any{"storage", "luks"}
		bad("Pith does not set up LUKS volumes yet")
	}
	p := &Plan{}
	seenDisk := map[string]bool{}
	for i, d := range cfg.Storage.Disks {
		at = []any{"storage", "disks", i, "device"}
		if !strings.HasPrefix(d.Device, "/dev/") {
			bad("%q is not a /dev path", d.Device)
			continue
		}
		if seenDisk[d.Device] {
			bad("%s is listed twice", d.Device)
		}
		seenDisk[d.Device] = true
		disk := Disk{Device: d.Device, WipeTable: b(d.WipeTable)}
		for j, pt := range d.Partitions {
			at = []any{"storage", "disks", i, "partitions", j}
			if b(pt.Resize) {
				at = append(at, "resize")
				bad("Pith does not resize partitions yet")
				at = at[:len(at)-1]
			}
			part := Partition{
				Label: pt.Label, StartMiB: pt.StartMiB, SizeMiB: pt.SizeMiB,
				TypeGUID: strings.ToUpper(s(pt.TypeGUID)), GUID: strings.ToUpper(s(pt.GUID)),
				WipeEntry: b(pt.WipePartitionEntry), ShouldExist: pt.ShouldExist == nil || *pt.ShouldExist,
			}
			if pt.Number < 0 || pt.Number > 128 {
				bad("number %d is not a GPT partition number (1-128)", pt.Number)
			}
			part.Number = pt.Number
			if part.Number == 0 && part.Label == nil && !part.ShouldExist {
				bad("shouldExist false needs a number or a label")
			}
			if part.StartMiB != nil && *part.StartMiB < 0 || part.SizeMiB != nil && *part.SizeMiB < 0 {
				bad("startMiB and sizeMiB must not be negative")
			}
			disk.Partitions = append(disk.Partitions, part)
		}
		p.Disks = append(p.Disks, disk)
	}
	seenPath := map[string]bool{}
	for i, f := range cfg.Storage.Filesystems {
		at = []any{"storage", "filesystems", i, "device"}
		fs := Filesystem{
			Device: f.Device, Format: s(f.Format), Path: s(f.Path), Label: s(f.Label), UUID: s(f.UUID),
			Wipe: b(f.WipeFilesystem),
		}
		for _, o := range f.Options {
			fs.Options = append(fs.Options, string(o))
		}
		for _, o := range f.MountOptions {
			fs.MountOptions = append(fs.MountOptions, string(o))
		}
		if !strings.HasPrefix(fs.Device, "/dev/") {
			bad("%q is not a /dev path", fs.Device)
		}
		if fs.Format == "" {
			// Ignition skips such an entry (it only names a device);
			// so does Pith.
			continue
		}
		at[len(at)-1] = "format"
		if _, ok := Formats[fs.Format]; !ok {
			bad("Pith makes ext4, xfs, vfat and swap, not %q", fs.Format)
		}
		at[len(at)-1] = "path"
		if fs.Path != "" {
			if err := checkMountPath(fs.Path); err != nil {
				bad("%v", err)
			} else if fs.Format == "swap" {
				bad("a swap area has no mount path")
			}
			if seenPath[path.Clean(fs.Path)] {
				bad("%s is mounted twice", fs.Path)
			}
			seenPath[path.Clean(fs.Path)] = true
		}
		p.Filesystems = append(p.Filesystems, fs)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// checkMountPath refuses the mounts that would hide the OS itself.
func checkMountPath(p string) error {
	if !path.IsAbs(p) {
		return fmt.Errorf("%q is not absolute", p)
	}
	c := path.Clean(p)
	for _, sys := range []string{"/", "/usr", "/etc", "/boot", "/proc", "/sys", "/dev", "/run", "/var", "/var/lib/pith"} {
		if c == sys {
			return fmt.Errorf("%s is part of the OS: mount a data filesystem below it (e.g. /var/lib/docker)", c)
		}
	}
	if c == "/usr" || strings.HasPrefix(c, "/usr/") {
		return fmt.Errorf("%s is on the read-only /usr image", c)
	}
	return nil
}

func b(p *bool) bool { return p != nil && *p }

func s(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// sortedNumbers returns the keys of m in order.
func sortedNumbers[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
