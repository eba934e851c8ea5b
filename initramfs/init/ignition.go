package pithinit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/configurl"
	"github.com/pith-os/pith/fwcfg"
	"github.com/pith-os/pith/initramfs/storage"
	"github.com/pith-os/pith/node"
	"golang.org/x/sys/unix"
)

// The storage stage's markers on ROOT (node.StorageDoneMarker says what
// each means). StoragePending is written on first boot before the
// skeleton's marker and removed once the stage concludes (no storage in
// the config, or .done): until then every boot runs the stage, so a stop
// before .started (a config that fails validation, an fw_cfg read error)
// or a cut stops every boot, not only the first.
const (
	StorageStarted = node.StorageStartedMarker
	StorageDone    = node.StorageDoneMarker
	StoragePending = node.StoragePendingMarker
)

// storageBoot runs on every boot once ROOT is mounted: it stops on a
// stage stopped half-way (.started without .done) and runs stage while
// it is pending.
func storageBoot(root string, stage func() error) error {
	if err := checkStorageMarkers(root); err != nil {
		return err
	}
	pending := filepath.Join(root, StoragePending)
	if !exists(pending) {
		return nil
	}
	if !exists(filepath.Join(root, StorageDone)) {
		if err := stage(); err != nil {
			return err
		}
	}
	if err := os.Remove(pending); err != nil && !os.IsNotExist(err) {
		return storageStop("removing "+StoragePending, err)
	}
	if err := syncFS(root); err != nil {
		return storageStop("syncing ROOT", err)
	}
	return nil
}

// checkStorageMarkers runs on every boot.
func checkStorageMarkers(root string) error {
	if exists(filepath.Join(root, StorageStarted)) && !exists(filepath.Join(root, StorageDone)) {
		return &StopError{Msg: "Ignition storage: a previous first boot stopped while partitioning or formatting (" + StorageStarted + " without .done): the disks are half-provisioned; reprovision this machine (a fresh ROOT) with a corrected config"}
	}
	return nil
}

// ignitionFirstBoot runs the first boot's Ignition stages before systemd:
// it reads the user-data once, from ignition.config.url when the kernel
// line names one, else the first present of EC2's metadata service
// (pith.platform=ec2 only), QEMU's fw_cfg (opt/org.pith/user-data), a
// config drive and the OEM partition's config.ign (pith install), in
// pithd's order (firstBootSources), then
// applies the config's kernel arguments (which may reboot once) and its
// storage. Any error stops the boot (StopError): Ignition fails closed.
func ignitionFirstBoot(l *logger, c *Cmdline, cmdline string, root, usr *Device) error {
	// by_name itself, not by_name/opt: a machine given no -fw_cfg opt/
	// file (no user-data) has no opt directory, and that is no config.
	if err := waitFwCfg(FwCfgACPI, FwCfgByName, fwCfgWait); err != nil {
		return storageStop("reading fw_cfg user-data", err)
	}
	cfgURL := func(u string) func() ([]byte, string, error) {
		return urlReader(l.Printf, u, filepath.Join(Sysroot, "usr"), configurl.DefaultWait)
	}
	sources, note := firstBootSources("/", cmdline, oemIgnition(c.OEM, c.Wait), ec2Reader(l.Printf), cfgURL)
	if note != "" {
		l.Printf("Ignition: %s", note)
	}
	cfg, data, src, err := userDataIgnition(sources)
	if err != nil || cfg == nil {
		return err
	}
	l.Printf("Ignition: config from %s", src.Name)
	if err := recordSource(Sysroot, cfg, data, src); err != nil {
		return err
	}
	if err := ignitionKargs(l, cmdline, cfg, usr); err != nil {
		return err
	}
	return ignitionStorage(l, cfg, data, src.Name, root, usr)
}

// ignitionStorage is the first boot's storage stage: when cfg (data, as
// read from source) has storage.disks, raid, luks or filesystems, it
// applies them. The disks of root and usr, the devices the system booted
// from, are refused, but for a volume on ROOT's partition (an encrypted
// ROOT).
func ignitionStorage(l *logger, cfg *cloudconfig.IgnitionConfig, data []byte, source string, root, usr *Device) error {
	plan, err := storagePlan("/", cfg)
	if err != nil || plan == nil {
		return err
	}
	l.Printf("Ignition storage: %d disks, %d arrays, %d LUKS volumes, %d filesystems from %s", len(plan.Disks), len(plan.Raid), len(plan.Luks), len(plan.Filesystems), source)
	var bootDisks []string
	for _, d := range []*Device{root, usr} {
		disks, err := wholeDisks(d.Path)
		if err != nil {
			return storageStop("finding the boot disk of "+d.Path, err)
		}
		bootDisks = append(bootDisks, disks...)
	}
	if err := durableMarker(Sysroot, StorageStarted, ""); err != nil {
		return storageStop("writing "+StorageStarted, err)
	}
	if err := stashForRootVolume(l, plan, root); err != nil {
		return err
	}
	umount, err := bindSystem(Sysroot)
	if err != nil {
		return storageStop("preparing the tools' chroot", err)
	}
	err = storage.Apply(plan, storage.Env{
		Root:       Sysroot,
		Run:        chrootRunner{root: Sysroot},
		Resolve:    resolveDevice,
		RootDevice: root.Path,
		BootDisks:  bootDisks,
		DisksOf:    wholeDisks,
		Log:        consoleLogger(l.Printf, "Ignition storage: "),
	})
	umount()
	if err != nil {
		return storageStop("applying", err)
	}
	if err := restoreRootVolume(l, plan); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if err := durableMarker(Sysroot, StorageDone, hex.EncodeToString(sum[:])+"\n"); err != nil {
		return storageStop("writing "+StorageDone, err)
	}
	l.Printf("Ignition storage: done")
	return nil
}

// storagePlan returns cfg's storage plan, or nil when it has no storage
// to apply. With storage, the fw_cfg meta-data below root is checked as
// pithd will check it: one pithd would refuse stops the boot here, before
// a disk is touched, not after.
func storagePlan(root string, cfg *cloudconfig.IgnitionConfig) (*storage.Plan, error) {
	plan, err := storage.FromConfig(cfg)
	if err != nil {
		return nil, storageStop("checking storage", err)
	}
	if plan.Empty() {
		return nil, nil
	}
	if _, err := fwcfg.ReadMetaData(root, cloudconfig.MaxSize); err != nil {
		return nil, storageStop("reading fw_cfg meta-data", err)
	}
	return plan, nil
}

// userDataIgnition reads the first boot's user-data (firstBootUserData:
// the first of sources present) and returns its Ignition config, the
// decompressed user-data and its source, or a nil config when there is
// none to apply here: no user-data, not Ignition, or an invalid config
// without storage (pithd's first-boot stage reports it, with every error
// and its line, and stops the boot there). An invalid config with storage
// stops the boot: nothing may be half-applied. A source that names an
// Ignition config (ignition.config.url) stops it on anything but a valid
// Ignition config, as Ignition's fetch does.
func userDataIgnition(sources []firstBootSource) (*cloudconfig.IgnitionConfig, []byte, firstBootSource, error) {
	ud, src, err := firstBootUserData(sources)
	if err != nil || ud == nil {
		return nil, nil, src, err
	}
	data, err := cloudconfig.Decompress(ud)
	if err == nil && src.Ignition && cloudconfig.Detect(data) != cloudconfig.FormatIgnition {
		err = fmt.Errorf("it is not an Ignition config (it reads as %s): %s names an Ignition config, as in Ignition; a cloud-config goes in pith.config.url", cloudconfig.Detect(data), configurl.Key)
	}
	if err != nil && src.Ignition {
		return nil, nil, src, storageStop("reading the config from "+src.Name, err)
	}
	if err != nil || cloudconfig.Detect(data) != cloudconfig.FormatIgnition {
		return nil, nil, src, nil // not Ignition: pithd's first-boot stage reports it
	}
	cfg, rep := cloudconfig.ParseIgnition(data)
	if cfg == nil || rep.HasErrors() {
		var partial cloudconfig.IgnitionConfig
		if !src.Ignition && (json.Unmarshal(data, &partial) != nil || !hasStorage(&partial)) {
			return nil, nil, src, nil
		}
		return nil, nil, src, storageStop("validating the Ignition config from "+src.Name, rep.Err())
	}
	return cfg, data, src, nil
}

// readFwCfgUserData reads fw_cfg's user-data below root: an error
// wrapping fs.ErrNotExist when there is none, a StopError when it cannot
// be read.
func readFwCfgUserData(root string) ([]byte, error) {
	ud, _, err := fwcfg.Read(root, fwcfg.UserData, cloudconfig.MaxSize)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, storageStop("reading fw_cfg user-data", err)
	}
	return ud, err
}

// FwCfgACPI is QEMU's fw_cfg device as ACPI lists it from the start.
const FwCfgACPI = "/sys/bus/acpi/devices/QEMU0002:00"

// FwCfgByName is where the qemu_fw_cfg driver lists fw_cfg files by name.
const FwCfgByName = fwcfg.ByName

// fwCfgWait bounds the wait for the qemu_fw_cfg driver: generous, as a
// TCG guest probes slowly, and a miss stops the boot.
const fwCfgWait = 30 * time.Second

// waitFwCfg waits, on a machine with the fw_cfg device (acpi), until the
// qemu_fw_cfg driver shows its directory (dir, .../by_name). The driver is
// loaded without async_probe (loadModules), so once dir is there every
// file is listed: read too early, the user-data would look absent and the
// storage be skipped. If dir never appears the config cannot be known, and
// that is an error, not "no config".
func waitFwCfg(acpi, dir string, wait time.Duration) error {
	if !exists(acpi) {
		return nil
	}
	for deadline := time.Now().Add(wait); !exists(dir); {
		if time.Now().After(deadline) {
			return fmt.Errorf("QEMU fw_cfg is present (%s) but %s did not appear within %s (is the qemu_fw_cfg module in the initramfs?)", acpi, dir, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func hasStorage(c *cloudconfig.IgnitionConfig) bool {
	s := c.Storage
	return len(s.Disks)+len(s.Filesystems)+len(s.Raid)+len(s.Luks) > 0
}

func storageStop(step string, err error) error {
	return &StopError{Msg: fmt.Sprintf("Ignition storage (%s) failed, the first boot stops here as Ignition does: %v", step, strings.ReplaceAll(err.Error(), "\n", "; "))}
}

// syncFS is atomicfile.SyncFS; a variable so a test can see its order.
var syncFS = atomicfile.SyncFS

// durableMarker writes the marker rel on ROOT once everything before it
// is on disk, then syncs it too: the mount units are renamed into place
// unsynced, and a .done that survived a cut without them would have
// pithd write storage.files onto ROOT instead of the filesystems.
func durableMarker(root, rel, body string) error {
	if err := syncFS(root); err != nil {
		return err
	}
	if err := writeMarker(filepath.Join(root, rel), body); err != nil {
		return err
	}
	return syncFS(root)
}

func writeMarker(p, body string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(body); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// bindSystem bind-mounts /dev, /proc, /sys and /run into root for the
// tools (mkfs checks /proc/mounts; blkid reads /sys; mdadm and
// cryptsetup make their nodes in /dev, as no udev runs, and keep their
// map and locks in /run, which switch_root hands to systemd; a TPM-bound
// volume's key is written to /run, a tmpfs, never to a disk) and returns
// the undo, which must run before switch_root moves the real ones there.
func bindSystem(root string) (func(), error) {
	var done []string
	undo := func() {
		for i := len(done) - 1; i >= 0; i-- {
			_ = unix.Unmount(done[i], unix.MNT_DETACH)
		}
	}
	for _, d := range []string{"/dev", "/proc", "/sys", "/run"} {
		t := filepath.Join(root, d)
		if err := os.MkdirAll(t, 0o755); err != nil {
			undo()
			return nil, err
		}
		if err := unix.Mount(d, t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			undo()
			return nil, fmt.Errorf("bind %s: %w", d, err)
		}
		done = append(done, t)
	}
	return undo, nil
}

// chrootRunner runs a tool of the new root (its /usr is the verified USR).
type chrootRunner struct{ root string }

func (c chrootRunner) Run(name string, args ...string) ([]byte, error) {
	// Not exec.Command: it would look the name up in the initramfs.
	cmd := &exec.Cmd{Args: append([]string{name}, args...)}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		// Lstat: a link may be absolute (bookworm's /usr/sbin/modprobe
		// -> /bin/kmod), which only the chroot resolves.
		if fi, err := os.Lstat(filepath.Join(c.root, dir, name)); err == nil && !fi.IsDir() {
			cmd.Path = filepath.Join(dir, name)
			break
		}
	}
	if cmd.Path == "" {
		return nil, fmt.Errorf("%s is not in this image's /usr (add its package to the image to use it)", name)
	}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: c.root}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// resolveDevice finds the node for a config's device name: kernel names
// directly, by-partlabel and by-partuuid links through the GPTs (there is
// no udev here). It waits, as new partitions appear asynchronously.
func resolveDevice(dev string) (string, error) {
	const wait = 15 * time.Second
	var spec Spec
	switch {
	case strings.HasPrefix(dev, "/dev/disk/by-partlabel/"):
		spec = Spec{Kind: "PARTLABEL", Value: strings.TrimPrefix(dev, "/dev/disk/by-partlabel/")}
	case strings.HasPrefix(dev, "/dev/disk/by-partuuid/"):
		g, err := ParseGUID(strings.TrimPrefix(dev, "/dev/disk/by-partuuid/"))
		if err != nil {
			return "", err
		}
		spec = Spec{Kind: "PARTUUID", Value: g.String()}
	case strings.HasPrefix(dev, "/dev/disk/by-id/virtio-"):
		return waitVirtioSerial(strings.TrimPrefix(dev, "/dev/disk/by-id/virtio-"), wait)
	case strings.HasPrefix(dev, "/dev/disk/"):
		return "", fmt.Errorf("the initramfs resolves /dev/<name>, /dev/disk/by-id/virtio-<serial>[-part<n>], /dev/disk/by-partlabel/ and /dev/disk/by-partuuid/ names only")
	default:
		deadline := time.Now().Add(wait)
		for {
			if fi, err := os.Stat(dev); err == nil && fi.Mode()&os.ModeDevice != 0 {
				return dev, nil
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("no such device after %s (disks seen: %s)", wait, seenDisks())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	d, err := WaitDevice(spec, wait, nil)
	if err != nil {
		return "", err
	}
	if disks := matchingDisks(spec); len(disks) > 1 {
		return "", fmt.Errorf("%s matches a partition on %d disks (%s): name it by /dev/disk/by-id/virtio-<serial>-part<n>", spec, len(disks), strings.Join(disks, ", "))
	}
	return d.Path, nil
}

// waitVirtioSerial finds a virtio disk by its serial (what udev's
// /dev/disk/by-id/virtio-<serial> names), or its partition n for
// "<serial>-part<n>". Kernel names (vda, vdb) follow the order the
// drivers probed, which is asynchronous here: only a serial is stable.
func waitVirtioSerial(id string, wait time.Duration) (string, error) {
	serial, part := id, 0
	if i := strings.LastIndex(id, "-part"); i > 0 {
		if n, err := strconv.Atoi(id[i+len("-part"):]); err == nil && n > 0 {
			serial, part = id[:i], n
		}
	}
	deadline := time.Now().Add(wait)
	for {
		ents, _ := os.ReadDir(SysBlock)
		var disks []string
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(SysBlock, e.Name(), "serial"))
			if err == nil && strings.TrimSpace(string(b)) == serial {
				disks = append(disks, e.Name())
			}
		}
		if len(disks) > 1 {
			// QEMU lets two disks share a serial: which one would be
			// formatted is not for the probe order to decide.
			return "", fmt.Errorf("%d virtio disks have the serial %q (%s)", len(disks), serial, strings.Join(disks, ", "))
		}
		for _, name := range disks {
			if part > 0 {
				pn, err := partitionName(name, part)
				if err != nil {
					break // not there yet
				}
				name = pn
			}
			p := filepath.Join(DevDir, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeDevice != 0 {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio disk with serial %q (and partition %d) after %s (disks seen: %s)", serial, part, wait, seenDisks())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
