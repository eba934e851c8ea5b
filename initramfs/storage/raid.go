package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/cloudconfig"
)

// MdadmConf is where the arrays are recorded in ROOT: the real root's
// udev rules (mdadm --incremental) assemble them on every boot under the
// names given there.
const MdadmConf = "etc/mdadm/mdadm.conf"

// mdadmCreateArgs is the mdadm command that builds a on the resolved
// member devices: metadata 1.2 at the start of each member (the
// bookworm default, named so a later default cannot change it) and
// homehost "any", so the array keeps its name on a machine whose
// hostname is set later by pithd.
func mdadmCreateArgs(a Raid, devs []string) []string {
	args := []string{
		"--create", cloudconfig.RaidDevice(a.Name), "--run",
		"--level", a.Level, "--raid-devices", strconv.Itoa(len(devs) - a.Spares),
		"--metadata=1.2", "--homehost=any",
	}
	if a.Spares > 0 {
		args = append(args, "--spare-devices", strconv.Itoa(a.Spares))
	}
	args = append(args, a.Options...)
	return append(args, devs...)
}

// loadModules loads kernel modules from the new root's /lib/modules with
// its modprobe: the initramfs carries only the boot drivers, and the
// kernel cannot load the rest on demand here (its modprobe path is not
// in the initramfs).
func loadModules(r Runner, mods ...string) error {
	if len(mods) == 0 {
		return nil
	}
	args := append([]string{"-a"}, mods...)
	if out, err := r.Run("modprobe", args...); err != nil {
		return fmt.Errorf("modprobe %s: %v: %s", strings.Join(mods, " "), err, lastLine(string(out)))
	}
	return nil
}

// makeArrays builds the plan's md arrays on blank members and records
// them in ROOT's mdadm.conf. Ignition has no wipe option for arrays, and
// mdadm --create over a member of another array or a filesystem would
// destroy it: a member holding anything is refused.
func makeArrays(arrays []Raid, env Env) error {
	if len(arrays) == 0 {
		return nil
	}
	mods := map[string]bool{"md_mod": true}
	for _, a := range arrays {
		mods[cloudconfig.RaidModules[a.Level]] = true
	}
	list := make([]string, 0, len(mods))
	for m := range mods {
		list = append(list, m)
	}
	sort.Strings(list)
	var conf []string
	for i, a := range arrays {
		var devs []string
		for _, d := range a.Devices {
			dev, err := env.device(d)
			if err != nil {
				return err
			}
			found, err := probe(env.Run, dev)
			if err != nil {
				return fmt.Errorf("array %s: %s: %w", a.Name, d, err)
			}
			if what := holds(found); what != "" {
				return fmt.Errorf("array %s: %s holds %s: Pith builds arrays on blank devices only (Ignition's raid has no wipe option); wipe it, or use a partition of this config", a.Name, d, what)
			}
			devs = append(devs, dev)
		}
		if i == 0 {
			// After the first members are checked: a refused
			// device stops the stage before anything runs.
			if err := loadModules(env.Run, list...); err != nil {
				return fmt.Errorf("storage.raid: %w", err)
			}
		}
		args := mdadmCreateArgs(a, devs)
		if out, err := env.Run.Run("mdadm", args...); err != nil {
			return fmt.Errorf("array %s: mdadm %s: %v: %s", a.Name, strings.Join(args, " "), err, firstAndLastLine(string(out)))
		}
		// With no udev running, mdadm makes /dev/md itself, mode 0700;
		// the array stays assembled into the real root, where udev only
		// adds its links there: give it udev's 0755, or only root could
		// resolve /dev/md/NAME.
		if out, err := env.Run.Run("chmod", "0755", "/dev/md"); err != nil {
			return fmt.Errorf("array %s: chmod 0755 /dev/md: %v: %s", a.Name, err, lastLine(string(out)))
		}
		out, err := env.Run.Run("mdadm", "--detail", "--brief", cloudconfig.RaidDevice(a.Name))
		line := arrayLine(string(out))
		if err != nil || line == "" {
			return fmt.Errorf("array %s: mdadm --detail --brief: %v: %s", a.Name, err, lastLine(string(out)))
		}
		conf = append(conf, line)
		env.log().Info("array created", "device", cloudconfig.RaidDevice(a.Name), "level", a.Level, "members", strings.Join(a.Devices, " "), "spares", a.Spares)
	}
	return writeMdadmConf(env.Root, conf)
}

// holds names what blkid found, or "" for nothing.
func holds(f Found) string {
	switch {
	case f.Type != "":
		return "a " + f.Type + " signature"
	case f.PTType != "":
		return "a " + f.PTType + " partition table"
	}
	return ""
}

// arrayLine is the ARRAY line of mdadm --detail --brief.
func arrayLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ARRAY ") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// writeMdadmConf appends the ARRAY lines to ROOT's mdadm.conf (the copy
// of the image's, with its HOMEHOST and MAILADDR), or writes one.
func writeMdadmConf(root string, lines []string) error {
	return appendLines(filepath.Join(root, MdadmConf), "Ignition storage.raid", lines)
}

// appendLines adds lines to the config file p (made if missing) under a
// comment naming what wrote them.
func appendLines(p, what string, lines []string) error {
	old, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	body := string(old)
	if body != "" && !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	body += "# " + what + ", written by pith-init on first boot\n" + strings.Join(lines, "\n") + "\n"
	return writeFile(p, []byte(body), 0o644)
}

// writeFile replaces p durably (atomicfile: fsync, rename, fsync of the
// directory), creating its directory: the stage's done marker must never
// be on disk before what the stage wrote.
func writeFile(p string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(p, data, mode)
}
