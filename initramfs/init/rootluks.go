package pithinit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/initramfs/storage"
	"golang.org/x/sys/unix"
)

// An encrypted ROOT (cloudconfig.RootDevice in storage.luks): first boot's
// storage stage makes it (rootStash), and every boot opens it here,
// through the TPM, before it is checked and mounted. The volume's name is
// in its LUKS2 header (cloudconfig.RootSubsystem): nothing else can be
// read before it is open.

// luksHeader is what the init reads of a LUKS header.
type luksHeader struct {
	Version                int
	Label, UUID, Subsystem string
}

// luksMagic begins a LUKS header (LUKS1 and LUKS2).
var luksMagic = []byte("LUKS\xba\xbe")

// parseLuksHeader reads the binary header at the start of a device: ok is
// false when it is not LUKS. LUKS2's fields (cryptsetup's on-disk format
// document): version at 6 (big endian), label at 24 (48 bytes), uuid at
// 168 (40), subsystem at 208 (48).
func parseLuksHeader(b []byte) (h luksHeader, ok bool) {
	if len(b) < 256 || !bytes.Equal(b[:6], luksMagic) {
		return luksHeader{}, false
	}
	h.Version = int(binary.BigEndian.Uint16(b[6:8]))
	if h.Version == 2 {
		str := func(off, n int) string { return string(bytes.TrimRight(b[off:off+n], "\x00")) }
		h.Label, h.UUID, h.Subsystem = str(24, 48), str(168, 40), str(208, 48)
	}
	return h, true
}

// rootVolumeName returns the name an encrypted ROOT opens as; it refuses a
// LUKS volume Pith did not make (there is no key to try).
func rootVolumeName(h luksHeader) (string, error) {
	if h.Version != 2 {
		return "", fmt.Errorf("it is LUKS%d, not a LUKS2 volume Pith made", h.Version)
	}
	name, ok := cloudconfig.RootVolumeName(h.Subsystem)
	if !ok {
		return "", fmt.Errorf("its LUKS2 subsystem is %q, not %s<name>: not a volume Pith made (storage.luks on %s)", h.Subsystem, cloudconfig.RootSubsystemPrefix, cloudconfig.RootDevice)
	}
	return name, nil
}

// readLuksHeader reads dev's LUKS header.
func readLuksHeader(dev string) (luksHeader, bool, error) {
	f, err := os.Open(dev)
	if err != nil {
		return luksHeader{}, false, err
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, 0); err != nil {
		return luksHeader{}, false, err
	}
	h, ok := parseLuksHeader(b)
	return h, ok, nil
}

// encryptedRoot returns the device ROOT's filesystem is on once its
// volume is open (/dev/mapper/<name>), or root itself when ROOT is not
// LUKS.
func encryptedRoot(root *Device) (*Device, string, error) {
	h, ok, err := readLuksHeader(root.Path)
	if err != nil || !ok {
		return root, "", err
	}
	name, err := rootVolumeName(h)
	if err != nil {
		return nil, "", &StopError{Msg: fmt.Sprintf("ROOT (%s) is encrypted, but %v", root.Path, err)}
	}
	return &Device{Path: cloudconfig.LuksDevice(name)}, name, nil
}

// TPMDevice is the kernel's TPM 2.0 resource manager, which systemd's
// tools use; tpmWait bounds the wait for it (the driver probes at boot).
const (
	TPMDevice = "/dev/tpmrm0"
	tpmWait   = 5 * time.Second
)

// waitTPM waits up to tpmWait for TPMDevice and reports whether it is there.
func waitTPM() bool {
	for deadline := time.Now().Add(tpmWait); !exists(TPMDevice); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// openRoot opens an encrypted ROOT through the TPM, with the slot's
// verified USR's cryptsetup, and returns the device to check and mount
// and USR's verified source (set up here first, then mounted at /usr).
// For an unencrypted ROOT it returns root and no source. A ROOT that does
// not open stops the boot: every slot meets the same volume.
func openRoot(l *logger, c *Cmdline, root, usr *Device) (*Device, *usrMount, error) {
	fs, name, err := encryptedRoot(root)
	if err != nil || name == "" {
		if err != nil && !errors.As(err, new(*StopError)) {
			err = fail("reading ROOT's header", root.Path, err)
		}
		return fs, nil, err
	}
	l.Printf("ROOT (%s) is encrypted (LUKS2 volume %s): opening it through the TPM", root.Path, name)
	m, err := verifyUSR(l, c, usr)
	if err != nil {
		return nil, nil, err
	}
	waitTPM()
	err = withUSRChroot(m, func(r storage.Runner) error { return storage.OpenRoot(r, root.Path, name) })
	if err != nil {
		return nil, nil, &StopError{Msg: fmt.Sprintf("ROOT (%s) is encrypted and the TPM did not open it (%s): the key is sealed to PCR %s, the Secure Boot state and keys, so a changed Secure Boot setup or a cleared or missing TPM keeps it closed (README, Encrypted ROOT, says how to recover)", root.Path, strings.ReplaceAll(err.Error(), "\n", "; "), storage.TPM2PCRs)}
	}
	if typ, err := FSType(fs.Path); err != nil || typ != "ext4" {
		return nil, nil, &StopError{Msg: fmt.Sprintf("ROOT's volume %s holds no ext4 (%v): a first boot that encrypted ROOT was cut before it was done; reprovision this machine", fs.Path, orErr(typ, err))}
	}
	l.Printf("opened ROOT (%s) as %s through the TPM", root.Path, fs.Path)
	return fs, m, nil
}

// withUSRChroot runs fn with USR's tools before ROOT is mounted: a tmpfs
// at Sysroot with the merged-/usr links, the verified USR at its /usr and
// the API filesystems, all gone again when fn returns.
func withUSRChroot(m *usrMount, fn func(storage.Runner) error) error {
	if err := os.MkdirAll(Sysroot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("pith-unlock", Sysroot, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", Sysroot, err)
	}
	defer unix.Unmount(Sysroot, unix.MNT_DETACH)
	for _, l := range skeletonLinks {
		if err := os.Symlink(l.target, filepath.Join(Sysroot, l.name)); err != nil {
			return err
		}
	}
	usrDir := filepath.Join(Sysroot, "usr")
	if err := os.Mkdir(usrDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(m.src, usrDir, m.typ, unix.MS_RDONLY|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount USR (%s) at %s: %w", m.src, usrDir, err)
	}
	defer unix.Unmount(usrDir, unix.MNT_DETACH)
	undo, err := bindSystem(Sysroot)
	if err != nil {
		return err
	}
	defer undo()
	return fn(chrootRunner{root: Sysroot})
}
