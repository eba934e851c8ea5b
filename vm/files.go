package vm

// A machine's files: its copy-on-write disk over the image and its
// user-data.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pith-os/pith/atomicfile"
)

// createOverlay makes a qcow2 overlay on the base image, optionally larger.
func createOverlay(ctx context.Context, base, overlay string, size int64) error {
	base, err := filepath.Abs(base)
	if err != nil {
		return err
	}
	format, vsize, err := imageInfo(ctx, base)
	if err != nil {
		return err
	}
	if size != 0 && size < vsize {
		return fmt.Errorf("disk size %d is smaller than the image (%d bytes): use at least the image's size", size, vsize)
	}
	tmp := overlay + ".tmp"
	args := []string{"create", "-q", "-f", "qcow2", "-F", format, "-b", base, tmp}
	if size != 0 {
		args = append(args, strconv.FormatInt(size, 10))
	}
	if out, err := exec.CommandContext(ctx, "qemu-img", args...).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("qemu-img create overlay: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return os.Rename(tmp, overlay)
}

// MinExtraDiskSize is the smallest Config.ExtraDiskSizes entry: below a
// MiB a disk holds no useful partition table and filesystem.
const MinExtraDiskSize = 1 << 20

// MaxExtraDisks is how many extra disks fit PCI slots 0x10-0x1e (see args;
// q35's ICH9 functions sit in 0x1f).
const MaxExtraDisks = 15

// createExtraDisks makes blank sparse raw disks extra1.img, extra2.img, ...
// in dir, blanking any from an earlier Start, and returns their paths.
func createExtraDisks(dir string, sizes []int64) ([]string, error) {
	var paths []string
	for i, n := range sizes {
		p := filepath.Join(dir, fmt.Sprintf("extra%d.img", i+1))
		// O_TRUNC then Truncate(n): blank and sparse, whatever was there.
		f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err == nil {
			err = f.Truncate(n)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return nil, fmt.Errorf("extra disk %s: %v", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func imageInfo(ctx context.Context, path string) (format string, size int64, err error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", 0, fmt.Errorf("image %s: %s", path, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", 0, fmt.Errorf("image %s: qemu-img: %v", path, err)
	}
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", 0, fmt.Errorf("image %s: qemu-img info: %v", path, err)
	}
	return info.Format, info.VirtualSize, nil
}

// saveUserData copies the user-data file src (EmptyUserData for "") to
// dst, mode 0600: user-data carries secrets (a member key, the discovery
// token).
func saveUserData(src, dst string) error {
	data := []byte(EmptyUserData)
	if src != "" {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		data = b
	}
	return atomicfile.WriteFile(dst, data, 0o600)
}
