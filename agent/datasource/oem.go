package datasource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The OEM partition (GPT label OEM, ext4) is mounted read-only at OEMDir by
// the image's usr-share-oem.mount, as on CoreOS. Its cloud-config is
// applied before the user's user-data on every boot, so a platform (a
// Vagrant box, a cloud) can add its account or agent without a datasource.
const (
	OEMDir         = "/usr/share/oem"
	OEMCloudConfig = "cloud-config.yml"
	// OEMIgnition is an Ignition config pith install put on the OEM
	// partition (flatcar-install -i's config.ign): the node's user-data
	// when no other source has one (OEMIgnitionSource).
	OEMIgnition = "config.ign"
	// OEMPlatform is the platform id the image builder writes (pith build
	// --platform).
	OEMPlatform = "pith/platform"
)

// OEM is the OEM partition's cloud-config.
type OEM struct {
	Root string
	// Cmdline is the kernel line (for pith.oem=); nil reads Root/proc/cmdline.
	Cmdline *string
}

// Name is the source name recorded with what OEM applied.
func (o *OEM) Name() string { return "oem" }

// Fetch returns the OEM cloud-config, or ErrNotFound when the partition
// has none (or is not mounted). When the kernel line names the OEM
// partition (pith.oem=PARTUUID=...) and a different filesystem is mounted
// at OEMDir - another Pith disk's OEM won the by-label race - it is an
// error: that disk's config is not this machine's.
func (o *OEM) Fetch() (*Result, error) {
	b, err := readOEM(o.Root, o.Cmdline, OEMCloudConfig)
	if err != nil {
		return nil, err
	}
	return &Result{Source: o.Name(), UserData: b}, nil
}

// readOEM reads the OEM file name, as OEM.Fetch says.
func readOEM(root string, cmdline *string, name string) ([]byte, error) {
	dir := filepath.Join(root, OEMDir)
	b, err := readLimited(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("OEM %s: %w", name, err)
	}
	cfg := Config{Root: root, Cmdline: cmdline}
	if dev := OEMDevice(cfg.cmdline()); dev != "" && strings.HasPrefix(dev, "/dev/disk/by-partuuid/") {
		if err := sameDevice(dir, filepath.Join(root, dev)); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// OEMIgnitionSource is the OEM partition's config.ign as user-data. It is
// a Source like the others, so the node applies it once, as Ignition, and
// a broken one fails as any Ignition user-data does. The initramfs reads
// the same file for kernelArguments and storage when fw_cfg has no
// user-data.
type OEMIgnitionSource struct {
	Root    string
	Cmdline *string
}

// Name implements Source.
func (o *OEMIgnitionSource) Name() string { return "oem-ignition" }

// Fetch implements Source.
func (o *OEMIgnitionSource) Fetch(context.Context) (*Result, error) {
	b, err := readOEM(o.Root, o.Cmdline, OEMIgnition)
	if err != nil {
		return nil, err
	}
	return &Result{UserData: b, Note: "from " + filepath.Join(OEMDir, OEMIgnition) + " (pith install)"}, nil
}

// sameDevice checks that the filesystem at dir lives on the block device
// dev. A device link that does not exist (no udev, tests) is not checked.
func sameDevice(dir, dev string) error {
	var fsSt, devSt unix.Stat_t
	if err := unix.Stat(dev, &devSt); err != nil {
		return nil
	}
	if devSt.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil
	}
	if err := unix.Stat(dir, &fsSt); err != nil {
		return err
	}
	if fsSt.Dev != devSt.Rdev {
		return fmt.Errorf("%s is not mounted from %s (the OEM partition the kernel line names): is a second Pith disk attached? detach it or unmount %s", dir, dev, dir)
	}
	return nil
}

// OEMDevice is the device of the OEM partition named by pith.oem= on the
// kernel line (PARTUUID=, PARTLABEL=, UUID=, LABEL= or a /dev path), or ""
// when the line names none or names it in a form Pith does not know.
func OEMDevice(cmdline string) string {
	v := cmdlineValue(cmdline, "pith.oem")
	kind, val, ok := strings.Cut(v, "=")
	if !ok {
		if strings.HasPrefix(v, "/dev/") {
			return v
		}
		return ""
	}
	if val == "" || strings.Contains(val, "/") {
		return ""
	}
	switch strings.ToUpper(kind) {
	case "PARTUUID":
		return "/dev/disk/by-partuuid/" + strings.ToLower(val)
	case "UUID":
		return "/dev/disk/by-uuid/" + strings.ToLower(val)
	case "PARTLABEL":
		return "/dev/disk/by-partlabel/" + val
	case "LABEL":
		return "/dev/disk/by-label/" + val
	}
	return ""
}

// OEMPlatformID returns the platform id the OEM partition records, or "".
func OEMPlatformID(root string) string {
	b, err := os.ReadFile(filepath.Join(root, OEMDir, OEMPlatform))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
