package install

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// target is the disk being installed to: a block device, or a regular
// file (an image for a VM, and the tests).
type target struct {
	path  string
	block bool
	rdev  uint64 // the block device's number
	size  int64
}

// openTarget checks that path can be written: it exists, is a block device
// or a regular file, nothing of it is mounted or in use, and it holds no
// partition table, filesystem or volume signature unless force.
func openTarget(path string, force bool, sys sysPaths) (*target, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("device %s: %v", path, err)
	}
	t := &target{path: path}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		t.block, t.rdev = true, uint64(st.Rdev)
	case unix.S_IFREG:
		t.size = st.Size
	default:
		return nil, fmt.Errorf("device %s: not a block device or a file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("device %s: %v", path, err)
	}
	defer f.Close()
	if t.block {
		if t.size, err = f.Seek(0, io.SeekEnd); err != nil {
			return nil, fmt.Errorf("device %s: size: %v", path, err)
		}
		if err := sys.checkUnused(path, t.rdev); err != nil {
			return nil, err
		}
	}
	if what := diskContents(f); what != "" && !force {
		return nil, fmt.Errorf("device %s holds %s: refusing to overwrite it without --force", path, what)
	}
	return t, nil
}

// sysPaths are the kernel's views of mounts and devices (tests point
// them at files).
type sysPaths struct {
	mountinfo, swaps, sysBlock string
}

var hostSys = sysPaths{mountinfo: "/proc/self/mountinfo", swaps: "/proc/swaps", sysBlock: "/sys/dev/block"}

// checkUnused refuses a device when it, or one of its partitions, is
// mounted, used as swap, or held by another device (LVM, dm-crypt, RAID).
// --force does not override this: writing under a mounted filesystem
// corrupts both.
func (s sysPaths) checkUnused(path string, rdev uint64) error {
	devs := map[string]string{devID(rdev): path} // "maj:min" -> name for messages
	dir := filepath.Join(s.sysBlock, devID(rdev))
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name(), "dev"))
			if err == nil && fileExists(filepath.Join(dir, e.Name(), "partition")) {
				devs[strings.TrimSpace(string(b))] = "/dev/" + e.Name()
			}
		}
	}
	if f, err := os.Open(s.mountinfo); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 5 {
				continue
			}
			if name, ok := devs[fs[2]]; ok {
				return fmt.Errorf("device %s is in use: %s is mounted at %s (unmount it first)", path, name, unescapeMount(fs[4]))
			}
		}
	}
	if b, err := os.ReadFile(s.swaps); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) == 0 {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(fs[0], &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
				if name, ok := devs[devID(uint64(st.Rdev))]; ok {
					return fmt.Errorf("device %s is in use: %s is active swap (swapoff it first)", path, name)
				}
			}
		}
	}
	for id, name := range devs {
		holders, _ := os.ReadDir(filepath.Join(s.sysBlock, id, "holders"))
		if len(holders) > 0 {
			return fmt.Errorf("device %s is in use: %s is held by %s (LVM, dm-crypt or RAID): stop that first", path, name, holders[0].Name())
		}
	}
	return nil
}

func devID(rdev uint64) string { return fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev)) }

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
