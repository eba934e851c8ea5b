// Package pithinit is the logic of Pith's initramfs init (/init): it loads
// the kernel modules the boot needs, finds the slot's USR partition and ROOT
// by PARTUUID, mounts them at /sysroot, prepares ROOT on first boot, grows it
// to the end of the disk, and switch_roots to systemd.
//
// The directory is initramfs/init; the package is named pithinit because a
// package called "init" cannot be imported.
package pithinit

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pith-os/pith/cloudconfig"
)

// Cmdline holds the pith.* parameters of the kernel command line.
type Cmdline struct {
	Slot     string // "a" or "b"
	Usr      Spec   // pith.usr=
	Root     Spec   // pith.root=
	OEM      Spec   // pith.oem= (optional)
	UsrHash  string // pith.usrhash= dm-verity root hash (hex); required unless NoVerity
	NoVerity bool   // pith.verity=off: debug images only (AllowUnverifiedFile)
	Debug    bool   // pith.debug: shell instead of reboot on failure
	Live     bool   // pith.live: USR from the initramfs, ROOT in RAM (live.go)
	Platform string // pith.platform=
	Init     string // pith.init=: what to switch_root into
	Wait     time.Duration
}

// Spec names a block device: PARTUUID=<guid>, PARTLABEL=<label> or a /dev path.
type Spec struct {
	Kind  string // "PARTUUID", "PARTLABEL", "path" or "" when unset
	Value string // the GUID in upper case, the label, or the path
}

func (s Spec) String() string {
	switch s.Kind {
	case "":
		return "(unset)"
	case "path":
		return s.Value
	}
	return s.Kind + "=" + s.Value
}

// DefaultInit is what the init hands over to.
const DefaultInit = "/usr/lib/systemd/systemd"

// DefaultWait bounds how long the init waits for a device to appear.
const DefaultWait = 30 * time.Second

// ParseCmdline parses /proc/cmdline. Unknown parameters are ignored (they
// belong to the kernel or systemd); malformed pith.* values are errors.
func ParseCmdline(line string) (*Cmdline, error) {
	c := &Cmdline{Init: DefaultInit, Wait: DefaultWait}
	for _, f := range cloudconfig.SplitKernelCmdline(line) {
		key, val, hasVal := strings.Cut(f, "=")
		if !strings.HasPrefix(key, "pith.") {
			continue
		}
		var err error
		switch key {
		case "pith.slot":
			if val != "a" && val != "b" {
				return nil, fmt.Errorf("pith.slot=%q: want a or b", val)
			}
			c.Slot = val
		case "pith.usr":
			c.Usr, err = parseSpec(key, val)
		case "pith.root":
			c.Root, err = parseSpec(key, val)
		case "pith.oem":
			c.OEM, err = parseSpec(key, val)
		case "pith.usrhash":
			if val == "" {
				// GRUB found no verity-<slot>.cfg for the slot.
				return nil, errors.New("pith.usrhash= is empty: the boot loader has no dm-verity root hash for this slot (pith/verity-<slot>.cfg missing on the ESP): refusing to boot an unverifiable /usr")
			}
			if _, herr := hex.DecodeString(val); herr != nil || len(val) != 64 {
				return nil, fmt.Errorf("pith.usrhash=%q: want the SHA-256 dm-verity root hash (64 hex digits)", val)
			}
			c.UsrHash = strings.ToLower(val)
		case "pith.verity":
			if val != "off" {
				return nil, fmt.Errorf("pith.verity=%q: the only setting is off (debug images)", val)
			}
			c.NoVerity = true
		case "pith.debug":
			c.Debug = !hasVal || val == "1" || val == "yes" || val == "true"
		case "pith.live":
			c.Live = !hasVal || val == "1" || val == "yes" || val == "true"
		case "pith.platform":
			c.Platform = val
		case "pith.init":
			if !strings.HasPrefix(val, "/") {
				return nil, fmt.Errorf("pith.init=%q: want an absolute path", val)
			}
			c.Init = val
		case "pith.wait":
			d, perr := time.ParseDuration(val)
			if perr != nil || d <= 0 {
				return nil, fmt.Errorf("pith.wait=%q: want a duration such as 30s", val)
			}
			c.Wait = d
		}
		if err != nil {
			return nil, err
		}
	}
	if c.Live {
		if c.UsrHash == "" && !c.NoVerity {
			return nil, errors.New("pith.live without pith.usrhash=: a live system mounts its /usr only through dm-verity too")
		}
		return c, nil
	}
	if c.Usr.Kind == "" {
		return nil, fmt.Errorf("no pith.usr= on the kernel command line (e.g. pith.usr=PARTUUID=<USR-A partition GUID>)")
	}
	if c.Root.Kind == "" {
		c.Root = Spec{Kind: "PARTLABEL", Value: "ROOT"}
	}
	return c, nil
}

func parseSpec(key, val string) (Spec, error) {
	kind, v, ok := strings.Cut(val, "=")
	switch {
	case strings.HasPrefix(val, "/dev/"):
		return Spec{Kind: "path", Value: val}, nil
	case ok && strings.EqualFold(kind, "PARTUUID"):
		g, err := ParseGUID(v)
		if err != nil {
			return Spec{}, fmt.Errorf("%s=%s: %v", key, val, err)
		}
		return Spec{Kind: "PARTUUID", Value: g.String()}, nil
	case ok && strings.EqualFold(kind, "PARTLABEL") && v != "":
		return Spec{Kind: "PARTLABEL", Value: v}, nil
	}
	return Spec{}, fmt.Errorf("%s=%q: want PARTUUID=<guid>, PARTLABEL=<label> or /dev/<name>", key, val)
}
