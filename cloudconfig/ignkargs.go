package cloudconfig

// Ignition's kernelArguments on Pith, as Fedora CoreOS applies them
// (ignition-kargs, before the disks stage): on first boot pith-init
// compares the config with the running kernel line and, if it differs,
// rewrites the machine's own arguments on the ESP (a GRUB environment
// block that grub.cfg loads into both slots' kernel lines, so they
// survive A/B updates) and reboots once. Secure Boot images' signed
// grub.cfg takes that unsigned file only when each argument in it is on
// an allowlist (node.SecureBootKargs), and pith-init refuses the others
// there.
// What is checked here is what must hold before boot: no argument Pith's
// boot depends on, nothing GRUB could read as more than one argument.

import (
	"fmt"
	"slices"
	"strings"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
	vpath "github.com/coreos/vcontext/path"
	vreport "github.com/coreos/vcontext/report"
)

// KargsMaxLen bounds the machine's arguments, joined by spaces: they live
// in a 1024-byte GRUB environment block beside its header and variable
// name, and x86's kernel line holds 2048 bytes, about 450 of them the
// image's own (console, panic, the pith.* partitions, the root hash).
const KargsMaxLen = 900

// imageKargs are on every Pith image's kernel line (image/bootloader): a
// shouldNotExist of one can never be honoured, so it is refused here
// rather than at first boot. Per-platform ones (the serial console,
// EC2's nvme_core timeout) are caught at first boot.
var imageKargs = []string{"console=tty0"}

// kargForbidden says why arg may not be in kernelArguments, "" if it may.
// The list is what Pith's boot reads, or what would quietly do nothing:
//   - pith.*: the slot, USR, ROOT and OEM partitions, USR's dm-verity
//     root hash, the debug switches; grub.cfg sets them per slot.
//   - init=, rdinit=: would run something else than pith-init (and so
//     skip the dm-verity check of /usr) or than systemd.
//   - root=, rootfstype=, rootflags=: not read (pith-init finds ROOT by
//     pith.root=); set, they would only mislead.
//   - rd.*: dracut's options; Pith's initramfs is not dracut.
//   - panic=: panic=10 is what makes a slot whose kernel panics fall
//     back to the good one (DESIGN's boot chain).
func kargForbidden(arg string) string {
	key, _, _ := strings.Cut(arg, "=")
	switch {
	case arg == "":
		return "an empty kernel argument"
	case strings.HasPrefix(key, "pith."):
		return "pith.* arguments are the image's (slot, USR and its dm-verity root hash, ROOT, debug switches), set per slot by grub.cfg"
	case key == "init" || key == "rdinit":
		return key + "= would start something other than Pith's initramfs init (which checks /usr with dm-verity) or systemd"
	case key == "root" || key == "rootfstype" || key == "rootflags":
		return key + "= is not read on Pith: pith-init finds ROOT by the image's pith.root= (its PARTUUID)"
	case strings.HasPrefix(key, "rd."):
		return "rd.* arguments are dracut's; Pith's initramfs is not dracut and would ignore them"
	case key == "panic":
		return "panic=10 is the image's: a slot whose kernel panics reboots into the good slot"
	}
	if i := strings.IndexFunc(arg, func(r rune) bool { return !kargChar(r) }); i >= 0 {
		return fmt.Sprintf("%q is not allowed: each entry is one argument of letters, digits and . _ , : / = + @ %% ~ - (no spaces, quotes or GRUB script characters: it is kept in GRUB's environment)", arg[i:i+1])
	}
	return ""
}

func kargChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._,:/=+@%~-", r)
}

// checkKernelArguments adds the errors of cfg's kernelArguments. An
// argument in both lists, or twice in one, is Ignition's own error
// (duplicate entry: both lists are one set of keys).
func checkKernelArguments(cfg *IgnitionConfig, add func(vpath.ContextPath, string, ...any)) {
	k := cfg.KernelArguments
	if len(k.ShouldExist)+len(k.ShouldNotExist) == 0 {
		return
	}
	p := vpath.New("json", "kernelArguments")
	for _, l := range []struct {
		name string
		args []igntypes.KernelArgument
	}{{"shouldExist", k.ShouldExist}, {"shouldNotExist", k.ShouldNotExist}} {
		for i, a := range l.args {
			if why := kargForbidden(string(a)); why != "" {
				add(p.Append(l.name, i), "kernel argument %q: %s", a, why)
			} else if l.name == "shouldNotExist" && slices.Contains(imageKargs, string(a)) {
				add(p.Append(l.name, i), "kernel argument %q is on every Pith image's kernel line (grub.cfg), which a machine's own arguments cannot remove", a)
			}
		}
	}
	if n := len(strings.Join(kargStrings(k.ShouldExist), " ")); n > KargsMaxLen {
		add(p.Append("shouldExist"), "the kernel arguments add up to %d bytes; Pith keeps at most %d per machine", n, KargsMaxLen)
	}
	if cfg.Ignition.Config.Replace.Source != nil {
		add(vpath.New("json", "ignition", "config", "replace", "source"),
			"ignition.config.replace discards this whole config, kernelArguments too, but Pith's initramfs applies this config's kernelArguments before the replacement is fetched; keep them here and use ignition.config.merge instead of replace")
	}
}

// CheckKargsAllowed adds to rep an error for each shouldExist argument
// of ud's Ignition config that allowed refuses, the argument quoted and
// then why: pith validate --secure-boot passes node.SecureBootKargAllowed
// (cloudconfig imports nothing of Pith's). data is the user-data ud was
// parsed from, for the errors' positions.
func CheckKargsAllowed(ud *UserData, data []byte, rep *Report, allowed func(string) bool, why string) {
	if ud.Ignition == nil {
		return
	}
	var pr vreport.Report
	p := vpath.New("json", "kernelArguments", "shouldExist")
	for i, a := range ud.Ignition.KernelArguments.ShouldExist {
		// Forbidden ones have their error from Parse already.
		if kargForbidden(string(a)) == "" && !allowed(string(a)) {
			pr.AddOnError(p.Append(i), fmt.Errorf("kernel argument %q %s", a, why))
		}
	}
	if len(pr.Entries) == 0 {
		return
	}
	d, err := Decompress(data)
	if err != nil {
		d = data // not JSON then: the errors go without positions
	}
	addPithIgnitionReport(pr, d, rep)
}

func kargStrings(args []igntypes.KernelArgument) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}

// KargsUnmet lists what the kernel line cmdline lacks of k: "+a" for a
// shouldExist argument not on it, "-b" for a shouldNotExist one on it.
// Arguments match whole ("a=1" is not "a=2" nor "a"). None: satisfied.
func KargsUnmet(k igntypes.KernelArguments, cmdline string) []string {
	running := SplitKernelCmdline(cmdline)
	var out []string
	for _, a := range k.ShouldExist {
		if !slices.Contains(running, string(a)) {
			out = append(out, "+"+string(a))
		}
	}
	for _, a := range k.ShouldNotExist {
		if slices.Contains(running, string(a)) {
			out = append(out, "-"+string(a))
		}
	}
	return out
}

// KargsPlan is what a config's kernelArguments ask of one machine whose
// own arguments (those grub.cfg appends from the ESP) are file.
type KargsPlan struct {
	// Args are the machine's arguments with the config applied: file's,
	// in order, less Removed, then Added.
	Args           []string
	Added, Removed []string
	// Fixed are shouldNotExist arguments on the running line that file
	// did not put there: the image's own, which no machine file removes.
	Fixed []string
}

// PlanKargs applies k to the machine's arguments file, as rpm-ostree's
// --append-if-missing and --delete-if-present do: a shouldExist argument
// already on the running line (the image's, or file's) is not added
// again; every copy of a shouldNotExist one in file goes.
func PlanKargs(k igntypes.KernelArguments, file []string, cmdline string) KargsPlan {
	running := SplitKernelCmdline(cmdline)
	var p KargsPlan
	for _, a := range k.ShouldNotExist {
		s := string(a)
		switch {
		case slices.Contains(file, s):
			p.Removed = append(p.Removed, s)
		case slices.Contains(running, s):
			p.Fixed = append(p.Fixed, s)
		}
	}
	for _, a := range file {
		if !slices.Contains(p.Removed, a) {
			p.Args = append(p.Args, a)
		}
	}
	for _, a := range k.ShouldExist {
		s := string(a)
		if !slices.Contains(p.Args, s) && !slices.Contains(running, s) {
			p.Args = append(p.Args, s)
			p.Added = append(p.Added, s)
		}
	}
	return p
}

// SplitKernelCmdline splits a kernel command line into its arguments as
// the kernel does: on blanks, keeping double-quoted values together
// (`a="b c"` is one argument, its quotes removed).
func SplitKernelCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}
