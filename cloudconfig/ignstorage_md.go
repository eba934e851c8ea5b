package cloudconfig

import (
	"fmt"
	"regexp"
	"strings"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
)

// storage.raid and storage.luks: md arrays built with mdadm and LUKS2
// volumes with cryptsetup, by the initramfs after the partitions and
// before the filesystems (initramfs/storage), checked here for pith
// validate and the init alike.

// StorageRaid is one storage.raid entry: the array is /dev/md/<Name>.
type StorageRaid struct {
	Name    string
	Level   string // canonical: linear, raid0, raid1, raid4, raid5, raid6, raid10
	Devices []string
	Spares  int
	Options []string
}

// StorageLuks is one storage.luks entry: the opened volume is
// /dev/mapper/<Name>.
type StorageLuks struct {
	Name, Device, Label, UUID string
	// Key is the keyFile's contents; nil when the config gives none and
	// the initramfs generates one, as Ignition does.
	Key                  []byte
	Wipe, Discard, TPM2  bool
	Options, OpenOptions []string
	// Root: the volume is on the boot disk's ROOT partition (RootDevice),
	// the encrypted root filesystem's.
	Root bool
}

// RaidModules are the kernel modules (in the slot's USR) of each level:
// the initramfs loads them before mdadm, which does not.
var RaidModules = map[string]string{
	"linear": "linear", "raid0": "raid0", "raid1": "raid1", "raid4": "raid456",
	"raid5": "raid456", "raid6": "raid456", "raid10": "raid10",
}

// raidLevels maps Ignition's level names (its aliases included) to the
// canonical one, with the fewest raid devices Pith builds it from: a
// one-device stripe or mirror needs mdadm --force, and a 2-device raid5
// is a slow mirror.
var raidLevels = map[string]struct {
	level string
	min   int
}{
	"linear": {"linear", 2}, "raid0": {"raid0", 2}, "0": {"raid0", 2}, "stripe": {"raid0", 2},
	"raid1": {"raid1", 2}, "1": {"raid1", 2}, "mirror": {"raid1", 2},
	"raid4": {"raid4", 3}, "4": {"raid4", 3}, "raid5": {"raid5", 3}, "5": {"raid5", 3},
	"raid6": {"raid6", 4}, "6": {"raid6", 4}, "raid10": {"raid10", 2}, "10": {"raid10", 2},
}

// RaidDevice and LuksDevice are the device names a config uses for an
// array or an opened volume of its own.
func RaidDevice(name string) string { return "/dev/md/" + name }
func LuksDevice(name string) string { return "/dev/mapper/" + name }

// LuksDMNamePrefix is udev's other name for an opened volume.
const LuksDMNamePrefix = "/dev/disk/by-id/dm-name-"

// mdNameRE: an array or volume name that is one file name, a unit-name
// friendly one (systemd-cryptsetup@<name>.service) and fits the md
// superblock's 32-byte name.
var mdNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,31}$`)

// mdadmOwnOptions are the mdadm options Pith sets itself.
var mdadmOwnOptions = []string{"--level", "-l", "--raid-devices", "-n", "--spare-devices", "-x", "--metadata", "-e", "--homehost", "--name", "-N"}

// planRaid checks storage.raid (names only: devices are checked once
// every name is known, by checkRefs).
func planRaid(cfg *igntypes.Config, bad func(at []any, format string, args ...any)) []StorageRaid {
	var out []StorageRaid
	for i, r := range cfg.Storage.Raid {
		at := []any{"storage", "raid", i}
		a := StorageRaid{Name: r.Name, Spares: 0}
		if !mdNameRE.MatchString(r.Name) {
			bad(append(at, "name"), "array name %q: up to 32 letters, digits and _ . + - (the array is /dev/md/<name>)", r.Name)
		}
		lv, ok := raidLevels[strOf(r.Level)]
		if !ok {
			bad(append(at, "level"), "level %q is not one mdadm builds (linear, raid0, raid1, raid4, raid5, raid6, raid10)", strOf(r.Level))
		}
		a.Level = lv.level
		if r.Spares != nil {
			a.Spares = *r.Spares
		}
		for _, d := range r.Devices {
			a.Devices = append(a.Devices, string(d))
		}
		switch {
		case a.Spares < 0:
			bad(append(at, "spares"), "spares must not be negative")
		case a.Spares > 0 && (a.Level == "raid0" || a.Level == "linear"):
			bad(append(at, "spares"), "a %s array has no spares", a.Level)
		case ok && len(a.Devices)-a.Spares < lv.min:
			bad(append(at, "devices"), "%s needs at least %d devices besides the %d spares, not %d", a.Level, lv.min, a.Spares, len(a.Devices)-a.Spares)
		}
		for j, o := range r.Options {
			a.Options = append(a.Options, string(o))
			name, _, _ := strings.Cut(string(o), "=")
			for _, own := range mdadmOwnOptions {
				if name == own {
					bad(append(at, "options", j), "%s is set by Pith (level, devices, spares, --metadata=1.2, --homehost=any)", name)
				}
			}
		}
		out = append(out, a)
	}
	return out
}

// planLuks checks storage.luks and decodes each keyFile.
func planLuks(cfg *igntypes.Config, bad func(at []any, format string, args ...any)) []StorageLuks {
	var out []StorageLuks
	for i, l := range cfg.Storage.Luks {
		at := []any{"storage", "luks", i}
		v := StorageLuks{
			Name: l.Name, Device: strOf(l.Device), Label: strOf(l.Label), UUID: strOf(l.UUID),
			Wipe: boolOf(l.WipeVolume), Discard: boolOf(l.Discard), TPM2: boolOf(l.Clevis.Tpm2),
		}
		if !mdNameRE.MatchString(l.Name) {
			bad(append(at, "name"), "volume name %q: up to 32 letters, digits and _ . + - (the volume is /dev/mapper/<name>)", l.Name)
		}
		if v.UUID != "" && !guidRE.MatchString(v.UUID) {
			bad(append(at, "uuid"), "uuid %q is not a UUID (8-4-4-4-12 hex digits)", v.UUID)
		}
		switch c := l.Clevis; {
		case len(c.Tang) > 0:
			bad(append(at, "clevis", "tang"), "Pith binds LUKS volumes to the TPM (clevis.tpm2, through systemd-cryptenroll), not to tang servers")
		case c.Custom.Pin != nil || c.Custom.Config != nil:
			bad(append(at, "clevis", "custom"), "Pith has no clevis: only clevis.tpm2 is applied (through systemd-cryptenroll)")
		case c.Threshold != nil && *c.Threshold > 1:
			bad(append(at, "clevis", "threshold"), "with the TPM as the only pin, the threshold is 1")
		}
		if boolOf(l.Cex.Enabled) {
			bad(append(at, "cex"), "cex is for IBM Z crypto adapters, which Pith does not run on")
		}
		if src := l.KeyFile.Source; src != nil {
			key, err := luksKey(l.KeyFile)
			if err != nil {
				bad(append(at, "keyFile", "source"), "%v", err)
			}
			v.Key = key
		}
		for j, o := range l.Options {
			v.Options = append(v.Options, string(o))
			if n, _, _ := strings.Cut(string(o), "="); n == "--type" || n == "-M" || n == "--key-file" || n == "-d" {
				bad(append(at, "options", j), "%s is set by Pith (LUKS2, the keyFile)", n)
			}
		}
		for _, o := range l.OpenOptions {
			v.OpenOptions = append(v.OpenOptions, string(o))
		}
		out = append(out, v)
	}
	return out
}

// luksKey decodes a keyFile: a data: URL only, since the initramfs sets
// the volumes up before any network.
func luksKey(r igntypes.Resource) ([]byte, error) {
	src := *r.Source
	if SourceScheme(src) != "data" {
		return nil, fmt.Errorf("the initramfs sets up LUKS before the network: keyFile must be a data: URL, not %s", RedactSource(src))
	}
	raw, err := decodeDataURL(src)
	if err != nil {
		return nil, err
	}
	key, err := decompressResource(r, raw)
	if err != nil {
		return nil, err
	}
	// Not VerifyIgnitionHash's error: it shows the key's own digest,
	// which the console and a validation report have no need of.
	if VerifyIgnitionHash(r.Verification, key) != nil {
		return nil, fmt.Errorf("the keyFile does not match its verification.hash")
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("the keyFile is empty")
	}
	return key, nil
}

// checkRefs checks every device that names an array or a volume (and
// every array member and volume device) once the names are known
// (Ignition refuses a name listed twice):
// /dev/md/<name> needs that array, /dev/mapper/<name> and
// dm-name-<name> that volume; arrays are built before volumes, so a
// member cannot be a volume, nor an array (no nesting); one device is
// claimed once.
func checkRefs(p *StoragePlan, cfg *igntypes.Config, raids, lukses map[string]bool, bad func(at []any, format string, args ...any)) {
	partitioned := map[string]bool{}
	for _, d := range p.Disks {
		partitioned[d.Device] = true
	}
	claimed := map[string]string{}
	claim := func(at []any, dev, by string) {
		if prev, ok := claimed[dev]; ok {
			bad(at, "%s is already used by %s", dev, prev)
		}
		if partitioned[dev] {
			// Its GPT and a member's superblock or a LUKS header
			// would overlap.
			bad(at, "%s is partitioned by storage.disks: use one of its partitions", dev)
		}
		claimed[dev] = by
	}
	for i, r := range p.Raid {
		for j, d := range r.Devices {
			at := []any{"storage", "raid", i, "devices", j}
			if err := checkRef(d, raids, lukses, "an array member"); err != nil {
				bad(at, "%v", err)
			}
			claim(at, d, fmt.Sprintf("array %s", r.Name))
		}
	}
	for i, l := range p.Luks {
		at := []any{"storage", "luks", i, "device"}
		if err := checkRef(l.Device, raids, lukses, "a LUKS volume's device"); err != nil {
			bad(at, "%v", err)
		}
		claim(at, l.Device, fmt.Sprintf("volume %s", l.Name))
	}
	for i, f := range cfg.Storage.Filesystems {
		if strOf(f.Format) == "" {
			continue
		}
		at := []any{"storage", "filesystems", i, "device"}
		dev := f.Device
		if name, ok := strings.CutPrefix(dev, LuksDMNamePrefix); ok {
			dev = LuksDevice(name)
		}
		if by, ok := claimed[dev]; ok {
			bad(at, "%s is used by %s: make the filesystem on %s", f.Device, by, derivedName(by))
		}
	}
}

// derivedName is the device of "array X" or "volume X".
func derivedName(by string) string {
	if name, ok := strings.CutPrefix(by, "array "); ok {
		return RaidDevice(name)
	}
	return LuksDevice(strings.TrimPrefix(by, "volume "))
}

// checkRef checks a device that may name an array or a volume of this
// config (as what: an array member, a volume's device, a filesystem's).
func checkRef(dev string, raids, lukses map[string]bool, what string) error {
	if name, ok := strings.CutPrefix(dev, "/dev/md/"); ok {
		switch {
		case !raids[name]:
			return fmt.Errorf("%s: no storage.raid is named %q", dev, name)
		case what == "an array member":
			return fmt.Errorf("%s: Pith does not nest arrays", dev)
		}
		return nil
	}
	name, ok := strings.CutPrefix(dev, "/dev/mapper/")
	if !ok {
		name, ok = strings.CutPrefix(dev, LuksDMNamePrefix)
	}
	if ok {
		switch {
		case !lukses[name]:
			return fmt.Errorf("%s: no storage.luks is named %q", dev, name)
		case what != "a filesystem's device":
			return fmt.Errorf("%s cannot be %s: volumes are opened after the arrays are built, and one LUKS volume is not put in another", dev, what)
		}
		return nil
	}
	return checkStorageDevice(dev, false)
}
