package pithinit

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pith-os/pith/cloudconfig"
)

// OEMIgnition is the OEM partition's Ignition config that pith install
// writes (flatcar-install -i's config.ign; agent/datasource.OEMIgnition,
// image/install.OEMIgnition): the first boot's config when fw_cfg has no
// user-data, as pithd takes it when no datasource has one.
const OEMIgnition = "config.ign"

// oemMount is where the first boot mounts the OEM partition, read-only,
// to read OEMIgnition (usr-share-oem.mount mounts it later in systemd).
const oemMount = "/run/pith-oem"

// oemReader returns the OEM partition's config.ign, or an error wrapping
// fs.ErrNotExist when there is none.
type oemReader func() ([]byte, error)

// oemIgnition reads config.ign from the OEM partition the kernel line
// names (pith.oem=), mounted read-only (ext4, as ROOT: its module is
// loaded). No pith.oem= means no OEM config; an OEM partition named but
// missing or unreadable is an error, so the boot stops (fails closed)
// rather than boot without the config pithd would then apply.
func oemIgnition(spec Spec, wait time.Duration) oemReader {
	return func() ([]byte, error) {
		if spec.Kind == "" {
			return nil, fs.ErrNotExist
		}
		dev, err := WaitDevice(spec, wait, nil)
		if err != nil {
			return nil, fmt.Errorf("finding the OEM partition %s: %w", spec, err)
		}
		if typ, err := FSType(dev.Path); err != nil || typ != "ext4" {
			return nil, fmt.Errorf("OEM partition %s: not an ext4 filesystem (%v)", dev.Path, orErr(typ, err))
		}
		if err := os.MkdirAll(oemMount, 0o700); err != nil {
			return nil, err
		}
		defer os.Remove(oemMount)
		// noload: a read-only look never replays a journal.
		if err := unix.Mount(dev.Path, oemMount, "ext4", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "noload"); err != nil {
			return nil, fmt.Errorf("mount %s (ext4, read-only) at %s: %w", dev.Path, oemMount, err)
		}
		b, err := readOEMIgnition(oemMount)
		if uerr := unix.Unmount(oemMount, 0); uerr != nil && err == nil {
			err = fmt.Errorf("unmount %s: %w", oemMount, uerr)
		}
		return b, err
	}
}

// readOEMIgnition reads dir's config.ign, refusing more than
// cloudconfig.MaxSize as pithd does.
func readOEMIgnition(dir string) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, OEMIgnition))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, cloudconfig.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > cloudconfig.MaxSize {
		return nil, fmt.Errorf("OEM %s is larger than %d MiB", OEMIgnition, cloudconfig.MaxSize>>20)
	}
	return b, nil
}
