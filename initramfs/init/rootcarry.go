package pithinit

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/initramfs/storage"
	"golang.org/x/sys/unix"
)

// First boot encrypting ROOT: the image's ROOT (an empty ext4 that first
// boot filled with the skeleton, /etc and /var from USR and the stage's
// markers) is copied to a tmpfs, which stands in for ROOT at Sysroot
// (USR moved onto it: the tools' chroot) while ROOT's partition becomes
// the volume; then the tmpfs's files go onto the volume's new ext4, which
// becomes Sysroot. A cut in between leaves no ROOT to boot: the next boot
// stops (the volume does not open, holds no ext4, or its markers say the
// stage was cut), as for any storage stage cut half-way.

// Where the init mounts ROOT's stand-in, a view of a mount without what is
// mounted below it, and the volume's new filesystem.
const (
	rootStashDir = "/pith-root-stash"
	rootViewDir  = "/pith-root-view"
	rootNewDir   = "/pith-root-new"
)

// stashRoot copies ROOT's files (mounted at Sysroot, USR at its /usr) to
// a tmpfs that then replaces ROOT at Sysroot, USR moved onto it: ROOT's
// partition is unmounted, free to be formatted.
func stashRoot() error {
	if err := os.MkdirAll(rootStashDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("pith-root", rootStashDir, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", rootStashDir, err)
	}
	if err := copyMount(Sysroot, rootStashDir, false); err != nil {
		return fmt.Errorf("copying ROOT's files to a tmpfs: %w", err)
	}
	return replaceSysroot(rootStashDir)
}

// restoreRoot mounts the new ROOT filesystem (dev, ext4) and copies the
// tmpfs at Sysroot onto it, durably; it then replaces the tmpfs at
// Sysroot, USR moved onto it.
func restoreRoot(dev string) error {
	if err := os.MkdirAll(rootNewDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, rootNewDir, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	if err := copyMount(Sysroot, rootNewDir, true); err != nil {
		return fmt.Errorf("copying ROOT's files onto %s: %w", dev, err)
	}
	return replaceSysroot(rootNewDir)
}

// replaceSysroot moves USR from Sysroot/usr to dir/usr, unmounts what is
// at Sysroot and moves dir's mount there.
func replaceSysroot(dir string) error {
	usr := filepath.Join(dir, "usr")
	if err := os.MkdirAll(usr, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(filepath.Join(Sysroot, "usr"), usr, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving USR to %s: %w", usr, err)
	}
	if err := unix.Unmount(Sysroot, 0); err != nil {
		return fmt.Errorf("unmounting %s: %w", Sysroot, err)
	}
	if err := unix.Mount(dir, Sysroot, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving %s to %s: %w", dir, Sysroot, err)
	}
	return nil
}

// copyMount copies the files of the filesystem mounted at src, without
// the mounts below it (a non-recursive bind shows them), into dst,
// keeping modes, owners and symlinks (copyTree, as the skeleton's /etc).
// durable syncs dst before and after the files get their names.
func copyMount(src, dst string, durable bool) error {
	if err := os.MkdirAll(rootViewDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(src, rootViewDir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	err := copyNamed(rootViewDir, dst, durable)
	// Not lazily: ROOT's partition must be free for luksFormat.
	if uerr := unix.Unmount(rootViewDir, 0); uerr != nil && err == nil {
		err = fmt.Errorf("unmounting %s: %w", rootViewDir, uerr)
	}
	return err
}

// copyNamed is copyTree with every copied file named in place
// (nameCopied).
func copyNamed(src, dst string, durable bool) error {
	var copied []string
	if err := copyTree(src, dst, &copied); err != nil {
		return err
	}
	return nameCopied(dst, copied, durable)
}

// stashForRootVolume, when plan has a volume on ROOT, moves ROOT's files
// to the tmpfs that stands in for it during the stage (stashRoot).
func stashForRootVolume(l *logger, plan *storage.Plan, root *Device) error {
	if plan.RootVolume() == nil {
		return nil
	}
	// Before ROOT is touched: without a TPM the volume could not be
	// bound, and ROOT would be lost.
	if !waitTPM() {
		return storageStop("encrypting ROOT", fmt.Errorf("no TPM 2.0 (%s after %s): ROOT is bound to the TPM and stays as it is", TPMDevice, tpmWait))
	}
	if err := stashRoot(); err != nil {
		return storageStop("moving ROOT's files to a tmpfs to encrypt ROOT", err)
	}
	l.Printf("Ignition storage: ROOT's files are on a tmpfs while ROOT (%s) is encrypted", root.Path)
	return nil
}

// restoreRootVolume, when plan has a volume on ROOT, carries ROOT's files
// over to the volume's new filesystem, then mounted at Sysroot.
func restoreRootVolume(l *logger, plan *storage.Plan) error {
	v := plan.RootVolume()
	if v == nil {
		return nil
	}
	dev := cloudconfig.LuksDevice(v.Name)
	if err := restoreRoot(dev); err != nil {
		return storageStop("carrying ROOT's files over to "+dev, err)
	}
	l.Printf("Ignition storage: ROOT is encrypted: its files are on %s, opened through the TPM (PCR %s) on every boot", dev, storage.TPM2PCRs)
	return nil
}
