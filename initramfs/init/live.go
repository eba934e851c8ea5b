package pithinit

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// LiveUSR is where a live system's USR image (filesystem and dm-verity
// tree) sits in the initramfs: the ISO and PXE boots load it as a second
// cpio archive (image/live).
const LiveUSR = "/pith/usr.img"

// liveMasked are the image's units that mount partitions of an installed
// disk: a live system has none, and must not wait for (or mount) those of
// a disk it may be about to install to.
var liveMasked = []string{"boot.mount", "usr-share-oem.mount"}

// runLive boots the live system (pith.live): USR from the initramfs
// through a read-only loop device and dm-verity, ROOT a tmpfs, so no disk
// is touched and every boot is a first boot.
func runLive(l *logger, c *Cmdline) error {
	if err := os.MkdirAll(Sysroot, 0o755); err != nil {
		return fail("creating /sysroot", "", err)
	}
	if err := unix.Mount("tmpfs", Sysroot, "tmpfs", 0, "mode=0755"); err != nil {
		return fail("mounting ROOT", "tmpfs", err)
	}
	root := &Device{Path: "tmpfs"}
	l.Printf("live: ROOT is a tmpfs at %s", Sysroot)
	dev, err := attachLoop(LiveUSR, c.Wait)
	if err != nil {
		return fail("live: attaching USR", LiveUSR, err)
	}
	usrDir, err := mountUSR(l, c, root, &Device{Path: dev}, nil)
	if err != nil {
		return err
	}
	if err := CreateSkeleton(Sysroot, usrDir); err != nil {
		return fail("live: preparing ROOT", root.Path, err)
	}
	unitDir := filepath.Join(Sysroot, "etc/systemd/system")
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		return fail("live: masking disk mounts", unitDir, err)
	}
	for _, u := range liveMasked {
		if err := os.Symlink("/dev/null", filepath.Join(unitDir, u)); err != nil && !os.IsExist(err) {
			return fail("live: masking disk mounts", u, err)
		}
	}
	l.Printf("live: created the ROOT skeleton; masked %v", liveMasked)
	l.Printf("switching root to %s (%.3fs since kernel boot)", c.Init, monotonic().Seconds())
	if err := switchRoot(Sysroot, c.Init, nil); err != nil {
		return fail("switch_root", c.Init, err)
	}
	return nil
}

// attachLoop maps file on a free loop device, read-only, and returns the
// device's path. The loop module was loaded with the others; its device
// nodes may take a moment to appear.
func attachLoop(file string, wait time.Duration) (string, error) {
	var ctl *os.File
	deadline := time.Now().Add(wait)
	for {
		var err error
		if ctl, err = os.OpenFile("/dev/loop-control", os.O_RDWR, 0); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%v (no loop driver in this initramfs?)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return "", fmt.Errorf("LOOP_CTL_GET_FREE: %v", err)
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var lo *os.File
	for {
		if lo, err = os.OpenFile(dev, os.O_RDONLY, 0); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer lo.Close()
	cfg := unix.LoopConfig{Fd: uint32(f.Fd()), Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_READ_ONLY}}
	if err := unix.IoctlLoopConfigure(int(lo.Fd()), &cfg); err != nil {
		return "", fmt.Errorf("LOOP_CONFIGURE %s: %v", dev, err)
	}
	return dev, nil
}
