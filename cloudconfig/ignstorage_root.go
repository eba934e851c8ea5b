package cloudconfig

import (
	"strings"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
)

// An encrypted ROOT, as Fedora CoreOS's boot_device.luks: a storage.luks
// entry whose device is the boot disk's ROOT partition, bound to the TPM,
// and an ext4 labelled ROOT on its /dev/mapper/<name>. pith-init turns the
// image's ROOT into it on first boot (its files carried over) and opens it
// through the TPM on every boot before mounting it at /.

// RootDevice is how a config names the boot disk's ROOT partition: the one
// device of the boot disk a config may use, as a storage.luks device.
// /dev/disk/by-label/ROOT names a filesystem, which an encrypted ROOT no
// longer shows (and the initramfs has no udev links).
const RootDevice = "/dev/disk/by-partlabel/ROOT"

// RootFSLabel is the label of ROOT's filesystem, encrypted or not.
const RootFSLabel = "ROOT"

// RootSubsystem is the LUKS2 header's subsystem field of an encrypted ROOT:
// it marks the volume as Pith's and names the device mapper volume pith-init
// opens it as on every boot, before any file of ROOT can be read (the
// field holds 48 bytes; a volume name has at most 32).
func RootSubsystem(name string) string { return RootSubsystemPrefix + name }

// RootSubsystemPrefix begins RootSubsystem.
const RootSubsystemPrefix = "pith-root:"

// RootVolumeName reads RootSubsystem back: the volume's name, and whether
// subsystem is one Pith writes (a name as storage.luks takes it, which
// becomes a path and a command's argument).
func RootVolumeName(subsystem string) (string, bool) {
	name, ok := strings.CutPrefix(subsystem, RootSubsystemPrefix)
	return name, ok && mdNameRE.MatchString(name)
}

// RootVolume returns the plan's volume on ROOT, or nil.
func (p *StoragePlan) RootVolume() *StorageLuks {
	for i := range p.Luks {
		if p.Luks[i].Root {
			return &p.Luks[i]
		}
	}
	return nil
}

// IsRootVolumeFS reports whether a filesystem's device is the root
// volume's /dev/mapper/<name> (or dm-name-<name>).
func (p *StoragePlan) IsRootVolumeFS(dev string) bool {
	v := p.RootVolume()
	return v != nil && (dev == LuksDevice(v.Name) || dev == LuksDMNamePrefix+v.Name)
}

// checkRootStorage marks the volume on ROOT and checks what an encrypted
// ROOT needs; ROOT named anywhere else is refused.
func checkRootStorage(p *StoragePlan, cfg *igntypes.Config, bad func(at []any, format string, args ...any)) {
	for i, d := range cfg.Storage.Raid {
		for j, m := range d.Devices {
			if string(m) == RootDevice {
				bad([]any{"storage", "raid", i, "devices", j}, "%s is the system's root partition: only a storage.luks entry may name it (to encrypt it)", RootDevice)
			}
		}
	}
	for i, f := range cfg.Storage.Filesystems {
		if f.Device == RootDevice && strOf(f.Format) != "" {
			bad([]any{"storage", "filesystems", i, "device"}, "%s is the system's root partition: only a storage.luks entry may name it (to encrypt it); its filesystem is then made on the volume", RootDevice)
		}
	}
	for i := range p.Luks {
		v := &p.Luks[i]
		if v.Device != RootDevice {
			continue
		}
		v.Root = true
		l := cfg.Storage.Luks[i]
		at := []any{"storage", "luks", i}
		if !v.TPM2 {
			bad(at, "ROOT is opened in the initramfs on every boot, before any file can be read: Pith unlocks it with the TPM (clevis.tpm2: true); a keyFile alone would have to be stored unencrypted beside it (with the TPM, a keyFile is enrolled as a recovery key and not stored)")
		}
		if !v.Wipe {
			if l.WipeVolume != nil {
				at = append(at, "wipeVolume")
			}
			bad(at, "ROOT holds the system's filesystem on first boot: wipeVolume must be true (pith-init carries its files over to the encrypted ROOT)")
			at = at[:3]
		}
		for j, o := range v.Options {
			if n, _, _ := strings.Cut(o, "="); n == "--subsystem" {
				bad(append(at, "options", j), "--subsystem is set by Pith on ROOT's volume (it names the volume for later boots)")
			}
		}
		checkRootFS(v.Name, cfg, at, bad)
	}
}

// checkRootFS checks the one filesystem on the root volume (name): ext4,
// labelled ROOT, no path or mount options (pith-init mounts it at /).
func checkRootFS(name string, cfg *igntypes.Config, volAt []any, bad func(at []any, format string, args ...any)) {
	found := false
	for i, f := range cfg.Storage.Filesystems {
		if f.Device != LuksDevice(name) && f.Device != LuksDMNamePrefix+name || strOf(f.Format) == "" {
			continue
		}
		at := []any{"storage", "filesystems", i}
		if found {
			bad(append(at, "device"), "ROOT's volume %s already has a filesystem", LuksDevice(name))
			continue
		}
		found = true
		if strOf(f.Format) != "ext4" {
			bad(append(at, "format"), "ROOT's filesystem is ext4 (pith-init checks it with e2fsck and mounts it as /), not %q", strOf(f.Format))
		}
		if strOf(f.Label) != RootFSLabel {
			lat := at
			if f.Label != nil {
				lat = append(at, "label")
			}
			bad(lat, "ROOT's filesystem must be labelled %s, as the image's is", RootFSLabel)
		}
		if f.Path != nil {
			bad(append(at, "path"), "pith-init mounts ROOT's filesystem at / itself: give it no path")
		}
		if len(f.MountOptions) > 0 {
			bad(append(at, "mountOptions"), "pith-init mounts ROOT's filesystem itself, without mount options")
		}
	}
	if !found {
		bad(volAt, "a volume on ROOT needs a storage.filesystems entry on %s with format ext4 and label %s (pith-init checks it and mounts it at /)", LuksDevice(name), RootFSLabel)
	}
}
