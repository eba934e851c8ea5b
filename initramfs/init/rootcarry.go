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

// rootSwap names where the swap happens: the new root (with USR at its
// /usr), where ROOT's stand-in, a view of a mount without what is mounted
// below it, and the volume's new filesystem are mounted meanwhile.
type rootSwap struct{ sysroot, stash, view, newRoot string }

// theRootSwap is the init's.
var theRootSwap = rootSwap{Sysroot, "/pith-root-stash", "/pith-root-view", "/pith-root-new"}

// stashRoot copies ROOT's files (mounted at sysroot, USR at its /usr) to
// a tmpfs that then replaces ROOT at sysroot, USR moved onto it: ROOT's
// partition is unmounted, free to be formatted.
func (s rootSwap) stashRoot() error {
	if err := os.MkdirAll(s.stash, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("pith-root", s.stash, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", s.stash, err)
	}
	if err := s.copyMount(s.stash, false); err != nil {
		return fmt.Errorf("copying ROOT's files to a tmpfs: %w", err)
	}
	return s.replaceSysroot(s.stash)
}

// restoreRoot mounts the new ROOT filesystem (dev, ext4) and copies the
// tmpfs at sysroot onto it, durably; it then replaces the tmpfs at
// sysroot, USR moved onto it.
func (s rootSwap) restoreRoot(dev string) error {
	if err := os.MkdirAll(s.newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, s.newRoot, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	if err := s.copyMount(s.newRoot, true); err != nil {
		return fmt.Errorf("copying ROOT's files onto %s: %w", dev, err)
	}
	return s.replaceSysroot(s.newRoot)
}

// replaceSysroot moves USR from sysroot/usr to dir/usr, unmounts what is
// at sysroot and moves dir's mount there.
func (s rootSwap) replaceSysroot(dir string) error {
	usr := filepath.Join(dir, "usr")
	if err := os.MkdirAll(usr, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(filepath.Join(s.sysroot, "usr"), usr, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving USR to %s: %w", usr, err)
	}
	if err := unix.Unmount(s.sysroot, 0); err != nil {
		return fmt.Errorf("unmounting %s: %w", s.sysroot, err)
	}
	if err := unix.Mount(dir, s.sysroot, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving %s to %s: %w", dir, s.sysroot, err)
	}
	return nil
}

// copyMount copies the files of the filesystem mounted at sysroot,
// without the mounts below it (a non-recursive bind shows them), into
// dst, keeping modes, owners and symlinks (copyTree, as the skeleton's
// /etc). durable syncs dst before and after the files get their names.
func (s rootSwap) copyMount(dst string, durable bool) error {
	if err := os.MkdirAll(s.view, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(s.sysroot, s.view, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", s.sysroot, err)
	}
	err := copyNamed(s.view, dst, durable)
	// Not lazily: ROOT's partition must be free for luksFormat.
	if uerr := unix.Unmount(s.view, 0); uerr != nil && err == nil {
		err = fmt.Errorf("unmounting %s: %w", s.view, uerr)
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
	if err := theRootSwap.stashRoot(); err != nil {
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
	if err := theRootSwap.restoreRoot(dev); err != nil {
		return storageStop("carrying ROOT's files over to "+dev, err)
	}
	l.Printf("Ignition storage: ROOT is encrypted: its files are on %s, opened through the TPM (PCR %s) on every boot", dev, storage.TPM2PCRs)
	return nil
}
