package pithinit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Block-layer ioctls (linux/fs.h, linux/blkpg.h) and ext4's online resize
// (linux/ext4.h); x/sys/unix does not export them.
const (
	ioctlBLKPG        = 0x1269
	blkpgResizePart   = 3
	ioctlExt4ResizeFS = 0x40086610 // _IOW('f', 16, __u64)
)

type blkpgPartition struct {
	Start   int64
	Length  int64
	Pno     int32
	Devname [64]byte
	Volname [64]byte
	_       [4]byte // pad to the kernel's struct size
}

type blkpgIoctlArg struct {
	Op      int32
	Flags   int32
	Datalen int32
	_       [4]byte
	Data    unsafe.Pointer
}

// mountEarly mounts the API filesystems the init and its tools need.
func mountEarly() error {
	mounts := []struct {
		src, dir, typ string
		flags         uintptr
		data          string
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dir, m.typ, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.typ, m.dir, err)
		}
	}
	return nil
}

// growPartition rewrites the disk's GPT so partition dev grows to the end
// of the disk and tells the kernel the new size.
func growPartition(dev *Device) (*GrowPlan, error) {
	disk, err := os.OpenFile(dev.Disk, os.O_RDWR|unix.O_SYNC, 0)
	if err != nil {
		return nil, err
	}
	defer disk.Close()
	size, err := unix.IoctlGetUint64(int(disk.Fd()), unix.BLKGETSIZE64)
	if err != nil {
		return nil, fmt.Errorf("BLKGETSIZE64 on %s: %w", dev.Disk, err)
	}
	t, err := ReadGPT(disk, dev.SectorSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dev.Disk, err)
	}
	plan, err := t.PlanGrow(dev.Partition.Number, int64(size))
	if err != nil {
		return nil, err
	}
	if !plan.GrowsPartition && !plan.MovesBackup {
		return plan, nil
	}
	if err := t.Apply(disk, plan); err != nil {
		return nil, err
	}
	if err := disk.Sync(); err != nil {
		return nil, err
	}
	if plan.GrowsPartition {
		// BLKPG changes one partition in place and works while others on
		// the disk are in use, unlike BLKRRPART.
		p := blkpgPartition{
			Start:  int64(dev.Partition.FirstLBA) * dev.SectorSize,
			Length: int64(plan.NewLast-dev.Partition.FirstLBA+1) * dev.SectorSize,
			Pno:    int32(plan.Number),
		}
		a := blkpgIoctlArg{Op: blkpgResizePart, Datalen: int32(unsafe.Sizeof(p)), Data: unsafe.Pointer(&p)}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, disk.Fd(), ioctlBLKPG, uintptr(unsafe.Pointer(&a))); e != 0 {
			return nil, fmt.Errorf("BLKPG resize of partition %d on %s: %w", plan.Number, dev.Disk, e)
		}
	}
	dev.Partition.LastLBA = plan.NewLast
	return plan, nil
}

// growExt4 grows the mounted ext4 filesystem at dir (on device) to fill its
// partition. It returns the old and new block counts.
func growExt4(device, dir string) (oldBlocks, newBlocks uint64, err error) {
	bs, blocks, err := ext4Geometry(device)
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Open(device)
	if err != nil {
		return 0, 0, err
	}
	size, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	f.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("BLKGETSIZE64 on %s: %w", device, err)
	}
	want := size / bs
	if want <= blocks {
		return blocks, blocks, nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return 0, 0, err
	}
	defer d.Close()
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, d.Fd(), ioctlExt4ResizeFS, uintptr(unsafe.Pointer(&want))); e != 0 {
		return 0, 0, fmt.Errorf("EXT4_IOC_RESIZE_FS to %d blocks: %w", want, e)
	}
	return blocks, want, nil
}

// switchRoot moves the API mounts into newRoot, frees the initramfs (it is
// RAM that would otherwise stay allocated), makes newRoot / and execs init.
func switchRoot(newRoot, init string, logf func(string, ...any)) error {
	if _, err := os.Stat(filepath.Join(newRoot, init)); err != nil {
		return fmt.Errorf("%s not found on the new root: %w", init, err)
	}
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		t := filepath.Join(newRoot, m)
		if err := os.MkdirAll(t, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m, t, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s to %s: %w", m, t, err)
		}
	}
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	var rootStat unix.Stat_t
	if err := unix.Stat("/", &rootStat); err != nil {
		return err
	}
	removeRAMFS("/", rootStat.Dev, newRoot)
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if logf != nil {
		logf("switch_root: exec %s", init)
	}
	return unix.Exec(init, []string{init}, os.Environ())
}

// removeRAMFS deletes the initramfs' files, staying on its filesystem so
// nothing mounted below (the new root) is touched.
func removeRAMFS(dir string, dev uint64, skip string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if p == skip {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Dev != dev {
			continue
		}
		if e.IsDir() {
			removeRAMFS(p, dev, skip)
			unix.Rmdir(p)
		} else {
			unix.Unlink(p)
		}
	}
}

// rebootAfter syncs and restarts the machine so the boot loader can fall
// back to the other slot.
func rebootAfter(d time.Duration) {
	time.Sleep(d)
	// Leave ROOT clean; errors do not matter, the machine restarts.
	unix.Unmount("/sysroot/usr", 0)
	unix.Unmount("/sysroot", 0)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	// Reboot only returns on error; PID 1 must never exit.
	for {
		time.Sleep(time.Hour)
	}
}

// shell runs the emergency shell on the console until it exits.
func shell() error {
	cmd := exec.Command("/bin/sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "PATH=/bbin:/bin:/sysroot/usr/sbin:/sysroot/usr/bin", "HOME=/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Run(); err != nil {
		// No controlling terminal on some consoles: try without.
		cmd = exec.Command("/bin/sh")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), "PATH=/bbin:/bin:/sysroot/usr/sbin:/sysroot/usr/bin", "HOME=/")
		return cmd.Run()
	}
	return nil
}

func monotonic() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
