package storage

import (
	"bufio"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
)

// Runner runs a tool of the OS (mkfs.ext4, blkid...) and returns its
// combined output. The init runs them chrooted into the new root, whose
// /usr is the slot's dm-verity-checked USR.
type Runner interface {
	Run(name string, args ...string) ([]byte, error)
}

// Found is what blkid says is on a device; Type is "" for no filesystem,
// PTType "" for no partition table (a whole disk's gpt, dos).
type Found struct{ Type, UUID, Label, PTType string }

// parseBlkid reads `blkid -p -o export` output.
func parseBlkid(out string) Found {
	var f Found
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "TYPE":
			f.Type = v
		case "UUID":
			f.UUID = v
		case "LABEL":
			f.Label = v
		case "PTTYPE":
			f.PTType = v
		}
	}
	return f
}

// decide says whether fs must be made (true) or the one found kept
// (false), following Ignition: a filesystem of the asked format whose
// label and UUID agree (where given) is reused; anything else on the
// device is an error unless wipeFilesystem is set.
func decide(fs Filesystem, found Found) (bool, error) {
	if fs.Wipe || found.Type == "" && found.PTType == "" {
		return true, nil
	}
	var why string
	switch {
	case found.Type == "":
		why = fmt.Sprintf("holds a %s partition table", found.PTType)
	case found.Type != fs.Format:
		why = fmt.Sprintf("holds a %s filesystem, not %s", found.Type, fs.Format)
	case fs.Label != "" && fs.Label != found.Label:
		why = fmt.Sprintf("holds %s labelled %q, not %q", found.Type, found.Label, fs.Label)
	case fs.UUID != "" && !sameUUID(fs.Format, fs.UUID, found.UUID):
		why = fmt.Sprintf("holds %s with UUID %s, not %s", found.Type, found.UUID, fs.UUID)
	default:
		return false, nil
	}
	return false, fmt.Errorf("%s %s; set wipeFilesystem to replace it", fs.Device, why)
}

// sameUUID compares a config's uuid with blkid's as Ignition does: case
// aside, and a FAT volume id with or without its dash (blkid shows
// ABCD-1234, Ignition takes ABCD1234 too).
func sameUUID(format, want, found string) bool {
	if format == "vfat" {
		want, found = strings.ReplaceAll(want, "-", ""), strings.ReplaceAll(found, "-", "")
	}
	return strings.EqualFold(want, found)
}

// mkfsArgs is the command that makes fs on dev (the resolved device).
func mkfsArgs(fs Filesystem, dev string) []string {
	cmd := []string{cloudconfig.StorageFormats[fs.Format]}
	switch fs.Format {
	case "ext4":
		cmd = append(cmd, "-F", "-q")
		if fs.Label != "" {
			cmd = append(cmd, "-L", fs.Label)
		}
		if fs.UUID != "" {
			cmd = append(cmd, "-U", fs.UUID)
		}
	case "xfs":
		cmd = append(cmd, "-f")
		if fs.Label != "" {
			cmd = append(cmd, "-L", fs.Label)
		}
		if fs.UUID != "" {
			cmd = append(cmd, "-m", "uuid="+fs.UUID)
		}
	case "vfat":
		if fs.Label != "" {
			cmd = append(cmd, "-n", fs.Label)
		}
		if fs.UUID != "" {
			// A FAT volume id is 32 bits: Ignition takes "ABCD-1234".
			cmd = append(cmd, "-i", strings.ReplaceAll(fs.UUID, "-", ""))
		}
	case "swap":
		cmd = append(cmd, "-f")
		if fs.Label != "" {
			cmd = append(cmd, "-L", fs.Label)
		}
		if fs.UUID != "" {
			cmd = append(cmd, "-U", fs.UUID)
		}
	}
	cmd = append(cmd, fs.Options...)
	return append(cmd, dev)
}

// makeFilesystem makes (or keeps) fs on dev and returns what is on it.
func makeFilesystem(r Runner, fs Filesystem, dev string, log *slog.Logger) (Found, error) {
	found, err := probe(r, dev)
	if err != nil {
		return Found{}, fmt.Errorf("%s: %w", fs.Device, err)
	}
	make, err := decide(fs, found)
	if err != nil {
		return Found{}, err
	}
	if !make {
		log.Info("filesystem kept", "device", fs.Device, "format", found.Type, "uuid", found.UUID)
		return found, nil
	}
	if found.Type != "" || found.PTType != "" {
		if out, err := r.Run("wipefs", "-a", dev); err != nil {
			return Found{}, fmt.Errorf("%s: wipefs -a: %v: %s", fs.Device, err, strings.TrimSpace(string(out)))
		}
	}
	args := mkfsArgs(fs, dev)
	if out, err := r.Run(args[0], args[1:]...); err != nil {
		return Found{}, fmt.Errorf("%s: %s: %v: %s", fs.Device, strings.Join(args, " "), err, firstAndLastLine(string(out)))
	}
	found, err = probe(r, dev)
	if err != nil {
		return Found{}, err
	}
	if found.Type != fs.Format {
		return Found{}, fmt.Errorf("%s: after %s blkid finds %q, not %s", fs.Device, args[0], found.Type, fs.Format)
	}
	log.Info("filesystem made", "device", fs.Device, "format", fs.Format, "label", found.Label, "uuid", found.UUID)
	return found, nil
}

// probe asks blkid what is on dev. blkid exits 2 when it finds nothing.
func probe(r Runner, dev string) (Found, error) {
	out, err := r.Run("blkid", "-p", "-o", "export", dev)
	if err != nil {
		if ec, ok := err.(interface{ ExitCode() int }); ok && ec.ExitCode() == 2 {
			return Found{}, nil
		}
		return Found{}, fmt.Errorf("blkid -p %s: %v: %s", dev, err, lastLine(string(out)))
	}
	return parseBlkid(string(out)), nil
}

// firstAndLastLine is what a failed mkfs said, on one line: its complaint
// is the first line (mkfs.xfs, then its usage), or the last (mkfs.fat's
// usage on stderr comes before its buffered stdout), or the first with its
// version banner last (mkfs.fat, mke2fs).
func firstAndLastLine(s string) string {
	s = strings.TrimSpace(s)
	first, _, _ := strings.Cut(s, "\n")
	if last := lastLine(s); last != first {
		return strings.TrimSpace(first) + " ... " + last
	}
	return first
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
