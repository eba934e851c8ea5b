package cloudconfig

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
	vpath "github.com/coreos/vcontext/path"
)

// What the initramfs (initramfs/storage) applies of an Ignition config's
// storage.disks, raid, luks and filesystems, checked here so pith
// validate, the init and the first-boot stage refuse the same things.

// StorageFormats are the filesystems Pith makes, with the USR tool for each.
var StorageFormats = map[string]string{
	"ext4": "mkfs.ext4",
	"xfs":  "mkfs.xfs",
	"vfat": "mkfs.vfat",
	"swap": "mkswap",
}

// StoragePlan is what a config asks of the disks, checked, with Ignition's
// defaults filled in.
type StoragePlan struct {
	Disks       []StorageDisk
	Raid        []StorageRaid
	Luks        []StorageLuks
	Filesystems []StorageFilesystem
}

// Empty reports whether the config asks nothing of the disks.
func (p *StoragePlan) Empty() bool {
	return len(p.Disks)+len(p.Raid)+len(p.Luks)+len(p.Filesystems) == 0
}

// StorageDisk is one storage.disks entry.
type StorageDisk struct {
	Device     string
	WipeTable  bool
	Partitions []StoragePartition
}

// StoragePartition is one partition of a StorageDisk. Number 0 means "by label, or the
// first free number"; a nil StartMiB means the first free aligned sector,
// a nil or zero SizeMiB the rest of that free space.
type StoragePartition struct {
	Number      int
	Label       *string
	StartMiB    *int
	SizeMiB     *int
	TypeGUID    string
	GUID        string
	WipeEntry   bool
	ShouldExist bool
	// Resize grows an existing partition that matches but for its size
	// in place (Ignition spec 3.2+); never shrinks.
	Resize bool
}

// StorageFilesystem is one storage.filesystems entry.
type StorageFilesystem struct {
	Device, Format, Path, Label, UUID string
	Wipe                              bool
	Options, MountOptions             []string
}

// StorageProblem is one refusal, at a path of the config ("storage",
// "filesystems", 0, "path").
type StorageProblem struct {
	Path []any
	Msg  string
}

func (p StorageProblem) Error() string {
	var s []string
	for _, e := range p.Path {
		s = append(s, fmt.Sprint(e))
	}
	return strings.Join(s, ".") + ": " + p.Msg
}

// IgnitionStoragePlan checks what Pith can apply and returns the plan, or every
// refusal (each a StorageProblem naming its config path, so pith validate can
// show line:col and the console the path).
func IgnitionStoragePlan(cfg *igntypes.Config) (*StoragePlan, error) {
	var errs []error
	var at []any
	bad := func(format string, args ...any) {
		errs = append(errs, StorageProblem{Path: append([]any(nil), at...), Msg: fmt.Sprintf(format, args...)})
	}
	badAt := func(p []any, format string, args ...any) {
		errs = append(errs, StorageProblem{Path: p, Msg: fmt.Sprintf(format, args...)})
	}
	p := &StoragePlan{Raid: planRaid(cfg, badAt), Luks: planLuks(cfg, badAt)}
	raids, lukses := map[string]bool{}, map[string]bool{}
	for _, r := range p.Raid {
		raids[r.Name] = true
	}
	for _, l := range p.Luks {
		lukses[l.Name] = true
	}
	seenDisk := map[string]bool{}
	for i, d := range cfg.Storage.Disks {
		at = []any{"storage", "disks", i, "device"}
		if strings.HasPrefix(d.Device, "/dev/md/") || strings.HasPrefix(d.Device, "/dev/mapper/") {
			bad("%s: Pith partitions disks, not arrays or LUKS volumes (partition the disks under it)", d.Device)
			continue
		}
		if err := checkStorageDevice(d.Device, true); err != nil {
			bad("%v", err)
			continue
		}
		if seenDisk[d.Device] {
			bad("%s is listed twice", d.Device)
		}
		seenDisk[d.Device] = true
		disk := StorageDisk{Device: d.Device, WipeTable: boolOf(d.WipeTable)}
		for j, pt := range d.Partitions {
			at = []any{"storage", "disks", i, "partitions", j}
			part := StoragePartition{
				Label: pt.Label, StartMiB: pt.StartMiB, SizeMiB: pt.SizeMiB,
				TypeGUID: strings.ToUpper(strOf(pt.TypeGUID)), GUID: strings.ToUpper(strOf(pt.GUID)),
				WipeEntry: boolOf(pt.WipePartitionEntry), ShouldExist: pt.ShouldExist == nil || *pt.ShouldExist,
				Resize: boolOf(pt.Resize),
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
		fs := StorageFilesystem{
			Device: f.Device, Format: strOf(f.Format), Path: strOf(f.Path), Label: strOf(f.Label), UUID: strOf(f.UUID),
			Wipe: boolOf(f.WipeFilesystem),
		}
		for _, o := range f.Options {
			fs.Options = append(fs.Options, string(o))
		}
		for _, o := range f.MountOptions {
			fs.MountOptions = append(fs.MountOptions, string(o))
		}
		if err := checkRef(fs.Device, raids, lukses, "a filesystem's device"); err != nil {
			bad("%v", err)
		}
		if fs.Format == "" {
			// Ignition skips such an entry (it only names a device);
			// so does Pith.
			continue
		}
		at[len(at)-1] = "format"
		if _, ok := StorageFormats[fs.Format]; !ok {
			bad("Pith makes ext4, xfs, vfat and swap, not %q", fs.Format)
		}
		at[len(at)-1] = "label"
		if err := checkFSLabel(fs.Format, fs.Label); err != nil {
			bad("%v", err)
		}
		at[len(at)-1] = "uuid"
		if err := checkFSUUID(fs.Format, fs.UUID); err != nil {
			bad("%v", err)
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
	checkRootStorage(p, cfg, badAt)
	checkRefs(p, cfg, raids, lukses, badAt)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// vfatLabelBad are the characters mkfs.fat (dosfstools 4.2) refuses in a
// label.
const vfatLabelBad = `*?.,;:/\|+=<>[]"`

// checkFSLabel refuses the labels Ignition's validation lets through but
// the mkfs tool would refuse on first boot, after the disks are
// partitioned (Ignition already limits the length: 11 bytes for vfat, 12
// for xfs, 16 for ext4, 15 for swap). mkfs.fat runs with LC_ALL=C, so a
// vfat label is ASCII; lower case works (mkfs.fat only warns).
func checkFSLabel(format, label string) error {
	if format != "vfat" {
		return nil
	}
	for _, r := range label {
		if r < 0x20 || r > 0x7e || strings.ContainsRune(vfatLabelBad, r) {
			return fmt.Errorf("vfat label %q: mkfs.fat takes printable ASCII without %s", label, vfatLabelBad)
		}
	}
	return nil
}

// checkFSUUID refuses a uuid mkfs.xfs or mkfs.fat would refuse. A FAT
// volume id is 32 bits, written as blkid shows it (ABCD-1234) or without
// the dash, as Ignition takes it.
func checkFSUUID(format, uuid string) error {
	if uuid == "" {
		return nil
	}
	switch {
	case format == "vfat" && !vfatIDRE.MatchString(uuid):
		return fmt.Errorf("vfat uuid %q is not a 32-bit volume id like ABCD-1234", uuid)
	case format == "xfs" && !guidRE.MatchString(uuid):
		return fmt.Errorf("xfs uuid %q is not a UUID (8-4-4-4-12 hex digits)", uuid)
	}
	return nil
}

var vfatIDRE = regexp.MustCompile(`^[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}$`)

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

func boolOf(p *bool) bool { return p != nil && *p }

func strOf(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// ignitionStorageLimits reports what the initramfs cannot apply of
// storage.disks, filesystems, raid and luks (initramfs/storage applies
// them on first boot; pith validate and the init say the same).
func ignitionStorageLimits(cfg *IgnitionConfig, add func(vpath.ContextPath, string, ...any)) {
	_, err := IgnitionStoragePlan(cfg)
	if err == nil {
		return
	}
	var joined interface{ Unwrap() []error }
	errs := []error{err}
	if errors.As(err, &joined) {
		errs = joined.Unwrap()
	}
	for _, e := range errs {
		var p StorageProblem
		if errors.As(e, &p) {
			add(vpath.New("json", p.Path...), "%s", p.Msg)
		} else {
			add(vpath.New("json", "storage"), "%v", e)
		}
	}
}
