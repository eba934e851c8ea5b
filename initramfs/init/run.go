package pithinit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/initramfs/kmod"
	"github.com/pith-os/pith/initramfs/verity"
	"golang.org/x/sys/unix"
)

// ModulesList names the file (in /lib/modules/<version>/) where the builder
// lists the modules to load, in order, one per line.
const ModulesList = "pith.modules"

// Sysroot is where the new root is assembled.
const Sysroot = "/sysroot"

// FailureDelay is how long the init shows its error before rebooting.
const FailureDelay = 10 * time.Second

// stepError says which step failed and on which device.
type stepError struct {
	step, device string
	err          error
}

func (e *stepError) Error() string {
	if e.device != "" {
		return fmt.Sprintf("%s (%s): %v", e.step, e.device, e.err)
	}
	return fmt.Sprintf("%s: %v", e.step, e.err)
}

func fail(step, device string, err error) error {
	return &stepError{step: step, device: device, err: err}
}

// logger prints "pith-init[+0.123s]: ..." lines on the console (and at
// debug level into the kernel log, for the journal) with time since start.
type logger struct {
	out   io.Writer
	kmsg  io.Writer
	start time.Duration
}

func (l *logger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	el := monotonic() - l.start
	fmt.Fprintf(l.out, "pith-init[+%.3fs]: %s\n", el.Seconds(), msg)
	if l.kmsg != nil {
		fmt.Fprintf(l.kmsg, "<7>pith-init: %s\n", msg)
	}
}

// Main is the init's entry point: it never returns.
func Main() {
	l := &logger{out: os.Stdout, start: monotonic()}
	var debug bool
	err := func() (err error) {
		// A bug must not end PID 1 (a kernel panic hides the message).
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("pith-init crashed: %v", r)
			}
		}()
		return run(l, &debug)
	}()
	fmt.Fprintf(os.Stdout, "pith-init: FAILED: %v\n", err)
	var stop *StopError
	if errors.As(err, &stop) && !debug {
		// Not rebooting: every slot would meet the same ROOT, and GRUB
		// would count the boots against a good slot.
		fmt.Fprintln(os.Stdout, "pith-init: the boot stops here (not rebooting)")
		for {
			time.Sleep(time.Hour)
		}
	}
	if debug {
		fmt.Fprintln(os.Stdout, "pith-init: pith.debug is set: starting the emergency shell (/bin/sh); exit it to reboot")
		if serr := shell(); serr != nil {
			fmt.Fprintf(os.Stdout, "pith-init: shell: %v\n", serr)
		}
		rebootAfter(0)
	}
	fmt.Fprintf(os.Stdout, "pith-init: rebooting in %s so the boot loader can fall back (add pith.debug to the kernel line for a shell)\n", FailureDelay)
	rebootAfter(FailureDelay)
}

func run(l *logger, debug *bool) error {
	if err := mountEarly(); err != nil {
		return fail("mounting /proc, /sys, /dev, /run", "", err)
	}
	if k, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		l.kmsg = k
	}
	l.Printf("started %.3fs after the kernel booted; mounted /proc /sys /dev /run", l.start.Seconds())

	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fail("reading /proc/cmdline", "", err)
	}
	*debug = strings.Contains(" "+string(raw)+" ", " pith.debug ") || strings.Contains(string(raw), "pith.debug=1")
	c, err := ParseCmdline(string(raw))
	if err != nil {
		return fail("kernel command line", "", err)
	}
	*debug = c.Debug
	l.Printf("slot=%s usr=%s root=%s platform=%s", orDash(c.Slot), c.Usr, c.Root, orDash(c.Platform))

	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fail("uname", "", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	n, err := loadModules(filepath.Join("/lib/modules", release), l)
	if err != nil {
		return fail("loading kernel modules", "", err)
	}
	l.Printf("loaded %d kernel modules for %s", n, release)
	if c.Live {
		return runLive(l, c)
	}

	usr, err := WaitDevice(c.Usr, c.Wait, l.Printf)
	if err != nil {
		return fail("finding USR", c.Usr.String(), err)
	}
	root, err := WaitDevice(c.Root, c.Wait, l.Printf)
	if err != nil {
		return fail("finding ROOT", c.Root.String(), err)
	}

	if root.Disk != "" {
		// Growing is best effort: a disk the init cannot grow (another
		// partition after ROOT, an odd GPT) still boots, in either slot.
		plan, err := growPartition(root)
		if err != nil {
			l.Printf("warning: not growing ROOT (%s): %v", root.Path, err)
		} else if plan.GrowsPartition {
			l.Printf("grew ROOT partition %d on %s: %d -> %d sectors", plan.Number, root.Disk, plan.OldLast-root.Partition.FirstLBA+1, plan.NewLast-root.Partition.FirstLBA+1)
		} else if plan.MovesBackup {
			l.Printf("moved the backup GPT of %s to its end", root.Disk)
		}
	}

	// An encrypted ROOT is opened first (with USR's cryptsetup).
	rootFS, usrM, err := openRoot(l, c, root, usr)
	if err != nil {
		return err
	}
	if err := mountRoot(l, rootFS); err != nil {
		return err
	}
	usrDir, err := mountUSR(l, c, root, usr, usrM)
	if err != nil {
		return err
	}

	if !Initialized(Sysroot) {
		if err := CreateSkeleton(Sysroot, usrDir); err != nil {
			return fail("first boot: preparing ROOT", root.Path, err)
		}
		l.Printf("first boot: created the ROOT skeleton (/etc from /usr/share/pith/etc)")
	}
	// Ignition's kargs stage (which may reboot once), then its disks
	// stage: first boot until they conclude, before systemd.
	if err := storageBoot(Sysroot, func() error { return ignitionFirstBoot(l, c, string(raw), root, usr) }); err != nil {
		return err
	}
	if rootFS == root {
		// First boot's storage stage may have encrypted ROOT.
		if rootFS, _, err = encryptedRoot(root); err != nil {
			return err
		}
	}
	oldB, newB, err := growExt4(rootFS.Path, Sysroot)
	if err != nil {
		l.Printf("warning: not growing the ROOT filesystem (%s): %v", rootFS.Path, err)
	} else if newB != oldB {
		l.Printf("grew ROOT ext4 from %d to %d blocks", oldB, newB)
	}

	l.Printf("switching root to %s (%.3fs since kernel boot)", c.Init, monotonic().Seconds())
	if err := switchRoot(Sysroot, c.Init, nil); err != nil {
		return fail("switch_root", c.Init, err)
	}
	return nil
}

// mountRoot checks ROOT's ext4 and mounts it read-write at Sysroot.
func mountRoot(l *logger, root *Device) error {
	if err := os.MkdirAll(Sysroot, 0o755); err != nil {
		return fail("creating /sysroot", "", err)
	}
	if typ, err := FSType(root.Path); err != nil || typ != "ext4" {
		return fail("mounting ROOT", root.Path, fmt.Errorf("not an ext4 filesystem (%v)", orErr(typ, err)))
	}
	// Checked before it is mounted: a cut can leave ROOT needing a
	// journal replay or more (issue 14).
	checked, err := checkRoot(FsckPath, root.Path)
	if err != nil {
		return err
	}
	l.Printf("%s", checked)
	if err := unix.Mount(root.Path, Sysroot, "ext4", 0, ""); err != nil {
		return fail("mounting ROOT", root.Path, err)
	}
	l.Printf("mounted ROOT (%s) rw at %s", describe(root), Sysroot)
	return nil
}

// usrMount is what mounts USR: its source (the dm-verity device), its
// filesystem and how it is verified, for the log.
type usrMount struct{ src, typ, how string }

// verifyUSR maps the slot's USR through dm-verity against the kernel
// line's root hash (unverified only where a debug image allows it).
func verifyUSR(l *logger, c *Cmdline, usr *Device) (*usrMount, error) {
	typ, err := FSType(usr.Path)
	if err != nil {
		return nil, fail("mounting USR", usr.Path, err)
	}
	usrSource, how := usr.Path, ""
	switch {
	case c.NoVerity && fileExists(AllowUnverifiedFile):
		// The debug switch wins over the slot's root hash, which the
		// boot loader always passes.
		l.Printf("WARNING: USR is mounted WITHOUT dm-verity (pith.verity=off on the kernel line, allowed by this debug image's %s): nothing checks /usr", AllowUnverifiedFile)
		how = " UNVERIFIED (debug)"
	case c.NoVerity:
		return nil, fail("verifying USR with dm-verity", usr.Path, errors.New("pith.verity=off, but this image was not built to allow an unverified /usr (pith build --debug-unverified-usr): refusing to boot"))
	case c.UsrHash != "":
		dm, blocks, err := setupVerity(usr.Path, c.UsrHash)
		if err != nil {
			return nil, fail("verifying USR with dm-verity", usr.Path, err)
		}
		l.Printf("dm-verity: %s checks %s (%d blocks) against root hash %s...", dm, usr.Path, blocks, c.UsrHash[:16])
		usrSource, how = dm, " verified by dm-verity"
	default:
		return nil, fail("verifying USR with dm-verity", usr.Path, errors.New("no pith.usrhash= root hash on the kernel line: refusing to mount /usr unverified"))
	}
	return &usrMount{src: usrSource, typ: typ, how: how}, nil
}

// mountUSR mounts the slot's USR read-only at Sysroot/usr, verified by
// verifyUSR unless m says how already (an encrypted ROOT's unlock needed
// it first), and returns where it is mounted.
func mountUSR(l *logger, c *Cmdline, root, usr *Device, m *usrMount) (string, error) {
	usrDir := filepath.Join(Sysroot, "usr")
	if err := os.MkdirAll(usrDir, 0o755); err != nil {
		return "", fail("creating /sysroot/usr", root.Path, err)
	}
	if m == nil {
		var err error
		if m, err = verifyUSR(l, c, usr); err != nil {
			return "", err
		}
	}
	typ := m.typ
	if err := unix.Mount(m.src, usrDir, typ, unix.MS_RDONLY|unix.MS_NODEV, ""); err != nil {
		if c.UsrHash != "" {
			err = fmt.Errorf("mount %s read-only through dm-verity: %w (wrong pith.usrhash, or USR is corrupted)", typ, err)
		} else {
			err = fmt.Errorf("mount %s read-only: %w", typ, err)
		}
		return "", fail("mounting USR", usr.Path, err)
	}
	name := "USR"
	if c.Slot != "" {
		name += "-" + strings.ToUpper(c.Slot)
	}
	l.Printf("mounted %s (%s) %s ro at %s%s", name, describe(usr), typ, usrDir, m.how)
	return usrDir, nil
}

// AllowUnverifiedFile, present only in the initramfs of images built with
// pith build --debug-unverified-usr, lets pith.verity=off mount USR
// without dm-verity. A kernel line alone cannot turn verification off.
const AllowUnverifiedFile = "/etc/pith/allow-unverified-usr"

// setupVerity maps USR through dm-verity using the hash tree Pith's
// builder appends after the filesystem (see package verity).
func setupVerity(dev, rootHash string) (string, uint64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	sb, err := verity.Find(f)
	if err != nil {
		return "", 0, err
	}
	if err := verity.CheckRoot(f, sb, rootHash); err != nil {
		return "", 0, fmt.Errorf("%w: pith.usrhash does not belong to this USR (or USR is corrupted)", err)
	}
	dm, err := verity.Setup("usr", dev, sb, rootHash)
	return dm, sb.DataBlocks, err
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// loadModules loads the modules the builder listed, with their dependencies.
func loadModules(dir string, l *logger) (int, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if os.IsNotExist(err) {
		l.Printf("no modules for this kernel in the initramfs (%s): relying on built-in drivers", dir)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	deps, err := kmod.ParseDep(f)
	f.Close()
	if err != nil {
		return 0, err
	}
	wanted, err := readList(filepath.Join(dir, ModulesList))
	if err != nil {
		return 0, err
	}
	order, _, err := deps.Resolve(wanted)
	if err != nil {
		return 0, err
	}
	loaded := 0
	var absent []string
	failed := map[string]bool{}
	for _, m := range order {
		if dep := failedDep(deps, m, failed); dep != "" {
			failed[m] = true // its dependency is not there: loading would only log unknown symbols
			continue
		}
		// async_probe: drivers probe their devices in the background, so
		// a slow bus (an empty IDE controller under emulation) does not
		// hold up the boot; the disks are awaited below. qemu_fw_cfg
		// probes at once: its by_name directory then lists every file,
		// so an absent user-data file means none (waitFwCfg).
		params := "async_probe"
		if m == "qemu_fw_cfg" {
			params = ""
		}
		err := kmod.LoadFile(filepath.Join(dir, deps.Path[m]), params)
		switch {
		case err == nil:
			loaded++
		case errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT):
			// Drivers for hypervisors this machine is not refuse to
			// load (ENODEV). A missing disk is reported when awaited.
			failed[m] = true
			absent = append(absent, m)
		default:
			failed[m] = true
			l.Printf("warning: %v", err)
		}
	}
	if len(absent) > 0 {
		l.Printf("not loaded (not this hypervisor or hardware): %s", strings.Join(absent, " "))
	}
	return loaded, nil
}

// failedDep returns a direct dependency of m that failed to load.
func failedDep(deps *kmod.Deps, m string, failed map[string]bool) string {
	for _, d := range deps.Deps[m] {
		if failed[d] {
			return d
		}
	}
	return ""
}

func readList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" && !strings.HasPrefix(s, "#") {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

func describe(d *Device) string {
	if d.Partition.Number == 0 {
		return d.Path
	}
	return fmt.Sprintf("%s, PARTUUID=%s", d.Path, d.Partition.UUID)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orErr(s string, err error) string {
	if err != nil {
		return err.Error()
	}
	return s
}
