package verity

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Device-mapper ioctl interface (linux/dm-ioctl.h), spoken directly so the
// initramfs needs no dmsetup or libdevmapper.
const (
	dmIoctlSize   = 312 // sizeof(struct dm_ioctl)
	dmSpecSize    = 40  // sizeof(struct dm_target_spec)
	dmNameLen     = 128
	dmReadonly    = 1 << 0
	dmVersionNr   = 0
	dmDevCreateNr = 3
	dmDevRemoveNr = 4
	dmSuspendNr   = 6
	dmTableLoadNr = 9
)

func dmIoctlNr(nr uintptr) uintptr {
	// _IOWR(0xfd, nr, struct dm_ioctl)
	return 3<<30 | dmIoctlSize<<16 | 0xfd<<8 | nr
}

// dmCall sends one dm_ioctl with payload appended and returns the reply.
func dmCall(ctl *os.File, nr uintptr, name string, flags uint32, targets uint32, payload []byte) ([]byte, error) {
	size := dmIoctlSize + len(payload)
	if size < 16384 {
		size = 16384 // room for the kernel's reply
	}
	buf := make([]byte, size)
	le := binary.LittleEndian
	le.PutUint32(buf[0:], 4) // interface version 4.0.0
	le.PutUint32(buf[12:], uint32(size))
	le.PutUint32(buf[16:], dmIoctlSize)
	le.PutUint32(buf[20:], targets)
	le.PutUint32(buf[28:], flags)
	copy(buf[48:48+dmNameLen-1], name)
	copy(buf[dmIoctlSize:], payload)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, ctl.Fd(), dmIoctlNr(nr), uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		return nil, e
	}
	return buf, nil
}

// Setup maps dev through a read-only dm-verity target named name and
// returns the path of the verified device. Reads of blocks that do not
// match rootHash fail with EIO.
func Setup(name, dev string, sb *Superblock, rootHash string) (string, error) {
	ctl, err := os.OpenFile("/dev/mapper/control", os.O_RDWR, 0)
	if os.IsNotExist(err) {
		// devtmpfs names it mapper/control once dm-mod is loaded.
		return "", fmt.Errorf("no /dev/mapper/control: is dm-mod loaded? %w", err)
	}
	if err != nil {
		return "", err
	}
	defer ctl.Close()
	if _, err := dmCall(ctl, dmVersionNr, "", 0, 0, nil); err != nil {
		return "", fmt.Errorf("device-mapper version check: %w", err)
	}
	if _, err := dmCall(ctl, dmDevCreateNr, name, 0, 0, nil); err != nil {
		return "", fmt.Errorf("creating dm device %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			dmCall(ctl, dmDevRemoveNr, name, 0, 0, nil)
		}
	}()
	params := Table(dev, sb, rootHash)
	spec := make([]byte, dmSpecSize+(len(params)+1+7)/8*8)
	le := binary.LittleEndian
	le.PutUint64(spec[8:], sb.DataBlocks*uint64(sb.DataBlockSize)/512) // length in sectors
	le.PutUint32(spec[20:], uint32(len(spec)))                         // next
	copy(spec[24:40], "verity")
	copy(spec[dmSpecSize:], params)
	if _, err := dmCall(ctl, dmTableLoadNr, name, dmReadonly, 1, spec); err != nil {
		return "", fmt.Errorf("loading verity table for %s (%s): %w", dev, params, err)
	}
	reply, err := dmCall(ctl, dmSuspendNr, name, 0, 0, nil) // without the suspend flag: resume
	if err != nil {
		return "", fmt.Errorf("activating dm device %s: %w", name, err)
	}
	ok = true
	devt := le.Uint64(reply[40:])
	major, minor := uint32((devt&0xfff00)>>8), uint32((devt&0xff)|((devt>>12)&0xfff00))
	return nodeFor(name, major, minor)
}

// nodeFor returns /dev/dm-N for the device, creating /dev/mapper/<name>
// when devtmpfs has not made a node.
func nodeFor(name string, major, minor uint32) (string, error) {
	dm := fmt.Sprintf("/dev/dm-%d", minor)
	if b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dm), "dev")); err == nil &&
		strings.TrimSpace(string(b)) == fmt.Sprintf("%d:%d", major, minor) {
		if _, err := os.Stat(dm); err == nil {
			return dm, nil
		}
	}
	p := filepath.Join("/dev/mapper", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	if err := unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil && !os.IsExist(err) {
		return "", err
	}
	return p, nil
}
