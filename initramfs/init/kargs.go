package pithinit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/node"
	"golang.org/x/sys/unix"
)

// Ignition's kargs stage, run on first boot before the storage stage as
// Fedora CoreOS's ignition-kargs runs before its disks stage. The
// machine's own kernel arguments are node.KargsFile on the ESP, which
// grub.cfg appends to both slots' kernel lines (image/bootloader): a
// config whose kernelArguments this boot's line does not satisfy gets the
// file rewritten and the machine rebooted, once. The boot after runs the
// stage again (ROOT's storage stage is still pending), finds the line
// satisfied, and goes on; still unsatisfied after that reboot (the
// reboot marker on ROOT says it happened), it stops instead of rebooting
// again.

// ESPLabel is the ESP's GPT partition name (image/layout's LabelESP).
const ESPLabel = "EFI-SYSTEM"

// ESPBootPub is on the ESP of Secure Boot images only: the public key of
// the signed boot chain (image/build's SecureBootGrubPub, which the
// update agent reads the same way). Their signed grub.cfg takes the
// unsigned node.KargsFile only when each argument in it is on
// node.SecureBootKargs. Present whether or not the firmware enforces
// Secure Boot: what counts is what this grub.cfg reads.
const ESPBootPub = "pith/boot.pub"

// espMount is where the init mounts the ESP for the kargs stage (removed
// after, so nothing of it reaches the system's /run).
const espMount = "/run/pith-init-esp"

// kargsEnv is what the kargs stage reads and changes.
type kargsEnv struct {
	Root    string // ROOT, mounted: the reboot marker
	Cmdline string // this boot's kernel line (/proc/cmdline)
	// ESP mounts the ESP and returns its directory and the unmount.
	ESP func() (dir string, unmount func() error, err error)
	Log func(format string, args ...any)
}

// applyKargs brings the machine's arguments file in line with cfg's
// kernelArguments. reboot is true when it changed the file: the caller
// reboots at once. Anything else that leaves them unmet stops the boot.
func applyKargs(cfg *cloudconfig.IgnitionConfig, e kargsEnv) (reboot bool, err error) {
	k := cfg.KernelArguments
	if len(k.ShouldExist)+len(k.ShouldNotExist) == 0 {
		return false, nil
	}
	unmet := cloudconfig.KargsUnmet(k, e.Cmdline)
	if len(unmet) == 0 {
		e.Log("ignition: kernel arguments already in effect")
		return false, nil
	}
	want := strings.Join(unmet, " ")
	if exists(filepath.Join(e.Root, node.KargsRebootMarker)) {
		return false, kargsStop(fmt.Errorf("this machine rebooted once already to apply them (%s), and this boot's kernel line still lacks %s: the boot loader did not apply %s on the ESP (a grub.cfg from before kernelArguments?); not rebooting again",
			node.KargsRebootMarker, want, node.KargsFile))
	}
	dir, unmount, err := e.ESP()
	if err != nil {
		return false, kargsStop(fmt.Errorf("mounting the ESP: %w", err))
	}
	plan, err := changeKargsFile(dir, cfg, e.Cmdline, want)
	if uerr := unmount(); err == nil && uerr != nil {
		err = kargsStop(fmt.Errorf("unmounting the ESP: %w", uerr))
	}
	if err != nil {
		return false, err
	}
	if err := durableMarker(e.Root, node.KargsRebootMarker, strings.Join(plan.Args, " ")+"\n"); err != nil {
		return false, kargsStop(fmt.Errorf("writing %s: %w", node.KargsRebootMarker, err))
	}
	var changes []string
	for _, a := range plan.Added {
		changes = append(changes, "+"+a)
	}
	for _, a := range plan.Removed {
		changes = append(changes, "-"+a)
	}
	e.Log("ignition: kernel arguments changed (%s): rebooting once", strings.Join(changes, " "))
	return true, nil
}

// changeKargsFile rewrites the arguments file on the ESP mounted at dir;
// want is what this boot's line lacks, for the messages.
func changeKargsFile(dir string, cfg *cloudconfig.IgnitionConfig, cmdline, want string) (*cloudconfig.KargsPlan, error) {
	p := filepath.Join(dir, node.KargsFile)
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, kargsStop(fmt.Errorf("reading %s on the ESP: %w", node.KargsFile, err))
	}
	var file []string
	if err == nil {
		if file, err = parseKargsBlock(b); err != nil {
			return nil, kargsStop(fmt.Errorf("%s on the ESP: %w", node.KargsFile, err))
		}
	}
	plan := cloudconfig.PlanKargs(cfg.KernelArguments, file, cmdline)
	if len(plan.Fixed) > 0 {
		return nil, kargsStop(fmt.Errorf("shouldNotExist %s: on the image's own kernel line (grub.cfg), not among this machine's arguments (%s), so it cannot be removed", strings.Join(plan.Fixed, " "), node.KargsFile))
	}
	if exists(filepath.Join(dir, ESPBootPub)) {
		var refused []string
		for _, a := range plan.Args {
			if !node.SecureBootKargAllowed(a) {
				refused = append(refused, a)
			}
		}
		if len(refused) > 0 {
			return nil, kargsStop(fmt.Errorf("this image's boot chain is signed for Secure Boot (%s on the ESP), and its signed grub.cfg takes the machine's arguments from the unsigned %s only when each is on its allowlist (cloudconfig/README, \"kernelArguments\"); not on it: %s. Nothing was written: remove them from kernelArguments (pith validate --secure-boot finds them before boot)", ESPBootPub, node.KargsFile, strings.Join(refused, " ")))
		}
	}
	if len(plan.Added)+len(plan.Removed) == 0 {
		return nil, kargsStop(fmt.Errorf("%s on the ESP already asks for %s but this boot's kernel line does not have it: the boot loader does not apply the file (a grub.cfg from before kernelArguments?)", node.KargsFile, want))
	}
	block, err := kargsBlock(plan.Args)
	if err != nil {
		return nil, kargsStop(err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, kargsStop(err)
	}
	if err := atomicfile.WriteFile(p, block, 0o644); err != nil {
		return nil, kargsStop(fmt.Errorf("writing %s on the ESP: %w", node.KargsFile, err))
	}
	return &plan, nil
}

func kargsStop(err error) error {
	return &StopError{Msg: "ignition: kernelArguments not applied, the first boot stops here as Ignition does: " + strings.ReplaceAll(err.Error(), "\n", "; ")}
}

// The arguments file is a GRUB environment block (what load_env reads):
// its header, KargsVar=<arguments joined by spaces>, '#' padding to 1 KiB
// as grub-editenv makes it.
const (
	kargsHeader    = "# GRUB Environment Block\n"
	kargsBlockSize = 1024
)

func kargsBlock(args []string) ([]byte, error) {
	val := strings.Join(args, " ")
	if strings.ContainsAny(val, "\\\n") {
		return nil, fmt.Errorf("kernel arguments %q: a backslash or newline has no place on a kernel line", val)
	}
	if len(val) > cloudconfig.KargsMaxLen {
		return nil, fmt.Errorf("the machine's kernel arguments would add up to %d bytes; Pith keeps at most %d", len(val), cloudconfig.KargsMaxLen)
	}
	b := []byte(kargsHeader + node.KargsVar + "=" + val + "\n")
	return append(b, bytes.Repeat([]byte{'#'}, kargsBlockSize-len(b))...), nil
}

// parseKargsBlock returns the arguments of a block kargsBlock wrote;
// other variables are ignored, as GRUB ignores them.
func parseKargsBlock(b []byte) ([]string, error) {
	if !bytes.HasPrefix(b, []byte(kargsHeader)) {
		return nil, errors.New("not a GRUB environment block")
	}
	for _, line := range strings.Split(string(b[len(kargsHeader):]), "\n") {
		if v, ok := strings.CutPrefix(line, node.KargsVar+"="); ok {
			return strings.Fields(v), nil
		}
	}
	return nil, nil
}

// espOf finds the ESP on the disk of dev (the slot's USR): the boot
// disk's, not a copy on another disk.
func espOf(dev *Device) (string, error) {
	if dev.Disk == "" {
		return "", fmt.Errorf("%s is not a partition of a disk: no ESP beside it", dev.Path)
	}
	f, err := os.Open(dev.Disk)
	if err != nil {
		return "", err
	}
	t, err := ReadGPT(f, dev.SectorSize)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("%s: %w", dev.Disk, err)
	}
	p, ok := t.Find(Spec{Kind: "PARTLABEL", Value: ESPLabel})
	if !ok {
		return "", fmt.Errorf("%s has no %s partition", dev.Disk, ESPLabel)
	}
	name, err := partitionName(filepath.Base(dev.Disk), p.Number)
	if err != nil {
		return "", err
	}
	return filepath.Join(DevDir, name), nil
}

// mountESP mounts the ESP of dev's disk read-write at espMount.
func mountESP(dev *Device) (string, func() error, error) {
	esp, err := espOf(dev)
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(espMount, 0o700); err != nil {
		return "", nil, err
	}
	if err := unix.Mount(esp, espMount, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "umask=0077"); err != nil {
		os.Remove(espMount)
		return "", nil, fmt.Errorf("mount %s (vfat) at %s: %w", esp, espMount, err)
	}
	return espMount, func() error {
		if err := unix.Unmount(espMount, 0); err != nil {
			return err
		}
		return os.Remove(espMount)
	}, nil
}

// ignitionKargs is the first boot's kargs stage on this machine: cfg
// from fw_cfg, the ESP beside USR. It reboots (and does not return) when
// it changed the arguments.
func ignitionKargs(l *logger, cmdline string, cfg *cloudconfig.IgnitionConfig, usr *Device) error {
	reboot, err := applyKargs(cfg, kargsEnv{
		Root:    Sysroot,
		Cmdline: cmdline,
		ESP:     func() (string, func() error, error) { return mountESP(usr) },
		Log:     l.Printf,
	})
	if reboot {
		rebootAfter(0)
	}
	return err
}
