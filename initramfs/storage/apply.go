package storage

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/cloudconfig"
)

// Env is what Apply needs from the init.
type Env struct {
	// Root is the new root (/sysroot): the units go to its /etc.
	Root string
	// Run runs the filesystem tools.
	Run Runner
	// Resolve turns a config's device (/dev/vdb1,
	// /dev/disk/by-partlabel/data) into a device node that exists now,
	// waiting for it to appear; the initramfs has no udev links.
	Resolve func(dev string) (string, error)
	// RootDevice is ROOT's partition (as the init found it): a
	// storage.luks volume on cloudconfig.RootDevice is made there, to
	// encrypt the root, and stays open (the caller carries ROOT's files
	// over and mounts it). "" refuses such a volume.
	RootDevice string
	// BootDisks are the kernel names of the disks the system booted from
	// (ROOT's and USR's). DisksOf names the disks under a resolved device
	// (the disk itself, a partition's disk, a mapped device's slaves'). A
	// device on a boot disk is refused before anything is read or written:
	// the boot disk's probe order varies (vda or vdb), so /dev/vdb2 or a
	// by-partlabel name may point into it. Both are required.
	BootDisks []string
	DisksOf   func(dev string) ([]string, error)
	// Log gets each step (the init prints it on the console); nil
	// discards.
	Log *slog.Logger
}

// discard is the logger of an Env without Log.
var discard = slog.New(slog.DiscardHandler)

// log returns env.Log, or a logger that discards.
func (env Env) log() *slog.Logger {
	if env.Log == nil {
		return discard
	}
	return env.Log
}

// device resolves a config's device and refuses one on a boot disk.
func (env Env) device(cfgDev string) (string, error) {
	dev, err := env.Resolve(cfgDev)
	if err != nil {
		return "", fmt.Errorf("%s: %w", cfgDev, err)
	}
	if len(env.BootDisks) == 0 || env.DisksOf == nil {
		return "", fmt.Errorf("%s: the boot disk is unknown, so the device cannot be checked against it", cfgDev)
	}
	disks, err := env.DisksOf(dev)
	if err != nil {
		return "", fmt.Errorf("%s (%s): finding its disk: %w", cfgDev, dev, err)
	}
	for _, d := range disks {
		for _, b := range env.BootDisks {
			if d == b {
				return "", fmt.Errorf("%s is %s, on the boot disk %s: refused (name the disk by /dev/disk/by-id/virtio-<serial>)", cfgDev, dev, b)
			}
		}
	}
	return dev, nil
}

// UnitDir is where Apply writes the mount and swap units, in Root.
const UnitDir = "etc/systemd/system"

// Apply partitions the disks, builds the arrays, sets up the LUKS
// volumes, makes the filesystems and writes a unit for each filesystem
// with a path (and each swap area), in Ignition's order. The first error
// stops it.
func Apply(p *Plan, env Env) error {
	for _, d := range p.Disks {
		dev, err := env.device(d.Device)
		if err != nil {
			return err
		}
		if err := partitionDisk(d, dev, env.log()); err != nil {
			return err
		}
	}
	if err := makeArrays(p.Raid, env); err != nil {
		return err
	}
	if err := makeVolumes(p.Luks, env); err != nil {
		return err
	}
	for _, fs := range p.Filesystems {
		// udev's dm-name-<name> link is /dev/mapper/<name> here.
		cfgDev := fs.Device
		if name, ok := strings.CutPrefix(cfgDev, cloudconfig.LuksDMNamePrefix); ok {
			cfgDev = cloudconfig.LuksDevice(name)
		}
		resolve := env.device
		if p.IsRootVolumeFS(fs.Device) {
			// On the boot disk by design: the volume on ROOT.
			resolve = env.Resolve
		}
		dev, err := resolve(cfgDev)
		if err != nil {
			return err
		}
		found, err := makeFilesystem(env.Run, fs, dev, env.log())
		if err != nil {
			return err
		}
		name, body := Unit(fs, found.UUID)
		if name == "" {
			continue
		}
		if err := writeUnit(env.Root, name, body); err != nil {
			return err
		}
		env.log().Info("wrote unit", "unit", name, "device", fs.Device, "path", orSwap(fs.Path))
	}
	return closeVolumes(p.Luks, env)
}

func orSwap(p string) string {
	if p == "" {
		return "swap"
	}
	return p
}

// Unit returns the name and text of the unit that mounts fs on every
// boot (a .swap unit for swap), or "" when it has no path. The device is
// named by its filesystem UUID (udev makes the link), so a disk that
// comes up under another name still mounts.
func Unit(fs Filesystem, uuid string) (name, body string) {
	what := fs.Device
	if uuid != "" {
		what = "/dev/disk/by-uuid/" + uuid
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by pith-init from the Ignition config's storage.filesystems (%s).\n", fs.Device)
	if fs.Format == "swap" {
		name = unit.UnitNamePathEscape(what) + ".swap"
		fmt.Fprintf(&b, "[Unit]\nDescription=Ignition swap %s\n\n[Swap]\nWhat=%s\n", fs.Device, what)
		if len(fs.MountOptions) > 0 {
			fmt.Fprintf(&b, "Options=%s\n", strings.Join(fs.MountOptions, ","))
		}
		fmt.Fprintf(&b, "\n[Install]\nRequiredBy=swap.target\n")
		return name, b.String()
	}
	if fs.Path == "" {
		return "", ""
	}
	p := filepath.Clean(fs.Path)
	name = unit.UnitNamePathEscape(p) + ".mount"
	// Before=local-fs.target through the default dependencies; the
	// first-boot stage (after sysinit.target) writes storage.files onto it.
	fmt.Fprintf(&b, "[Unit]\nDescription=Ignition filesystem %s\n", p)
	if svc := cryptsetupUnit(fs.Device); svc != "" {
		// The by-uuid device appears once the volume is open anyway;
		// naming the service makes a failed unlock fail the mount at
		// once, with the reason, instead of after the device timeout.
		fmt.Fprintf(&b, "Requires=%s\nAfter=%s\n", svc, svc)
	}
	fmt.Fprintf(&b, "\n[Mount]\nWhat=%s\nWhere=%s\nType=%s\n", what, p, fs.Format)
	if len(fs.MountOptions) > 0 {
		fmt.Fprintf(&b, "Options=%s\n", strings.Join(fs.MountOptions, ","))
	}
	fmt.Fprintf(&b, "\n[Install]\nRequiredBy=local-fs.target\n")
	return name, b.String()
}

// writeUnit writes the unit and enables it the way systemctl enable would
// (a link in the target's .requires directory).
func writeUnit(root, name, body string) error {
	dir := filepath.Join(root, UnitDir)
	target := "local-fs.target"
	if strings.HasSuffix(name, ".swap") {
		target = "swap.target"
	}
	req := filepath.Join(dir, target+".requires")
	if err := os.MkdirAll(req, 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		return err
	}
	link := filepath.Join(req, name)
	_ = os.Remove(link)
	if err := os.Symlink("../"+name, link); err != nil {
		return err
	}
	return atomicfile.SyncDir(req)
}
