package install

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/layout"
	pithinit "github.com/pith-os/pith/initramfs/init"
)

// ManifestName is the image manifest looked for beside the image.
const ManifestName = "pith.manifest.json"

// Options say what to install where.
type Options struct {
	Device string // block device (or image file) to write
	Image  string // raw image (pith.img), or NAME.zst, as a path or http(s) URL
	// Manifest is the image manifest (default: pith.manifest.json beside
	// Image) and Signature its detached signature (default: Manifest +
	// ".sig"). A signature that exists must verify against Keys; none is
	// needed unless RequireSignature.
	Manifest, Signature string
	Keys                *channels.Keyring
	RequireSignature    bool
	UserData            []byte // a #cloud-config or an Ignition config for the OEM partition, or nil
	Platform            string // refuse an image built for another platform
	Force               bool   // overwrite a partition table, filesystem or volume
	TempDir             string // where a URL or compressed image is staged
	Client              *http.Client
	Log                 func(format string, args ...any)
	// Progress reports the bytes done of a step ("verify", "write").
	Progress func(step string, done, total int64)
}

// Result is what Install did.
type Result struct {
	Version, Platform string
	SignedBy          string // key id, "" when the manifest is unsigned
	ImageSize         int64
	DataWritten       int64 // bytes of data copied (holes are zeroed, not copied)
	Write             time.Duration
	GrownTo           int64 // the disk's size when the GPT was moved to its end, else 0
}

// Install writes the image to the device. Every check that can fail on
// bad input runs before the first byte is written to the device.
func Install(ctx context.Context, o Options) (*Result, error) {
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Keys == nil {
		o.Keys = channels.NewKeyring()
	}
	if o.Manifest == "" {
		o.Manifest = sibling(trimZst(o.Image), ManifestName)
	}
	if o.Signature == "" {
		o.Signature = o.Manifest + SignatureSuffix
	}
	var oemName string
	if o.UserData != nil {
		var err error
		if oemName, o.UserData, err = checkUserData(o.UserData); err != nil {
			return nil, err
		}
	}
	t, err := openTarget(o.Device, o.Force, hostSys)
	if err != nil {
		return nil, err
	}
	c, err := loadManifest(ctx, o.Client, o.Manifest, o.Signature, o.Keys, o.RequireSignature)
	if err != nil {
		return nil, err
	}
	m := c.m
	res := &Result{Version: m.Version, Platform: m.Platform, SignedBy: c.signedBy, ImageSize: c.image.Size}
	if c.signedBy != "" {
		logf("image manifest %s: Pith %s for %s, signed by trusted key %s", o.Manifest, m.Version, m.Platform, c.signedBy)
	} else {
		logf("image manifest %s: Pith %s for %s, unsigned (no %s): checking the image's SHA-256 only", o.Manifest, m.Version, m.Platform, o.Signature)
	}
	if o.Platform != "" && o.Platform != m.Platform {
		return nil, fmt.Errorf("the image is built for platform %s, not %s: build one with pith build --platform %s", m.Platform, o.Platform, o.Platform)
	}
	if t.size < c.image.Size {
		return nil, fmt.Errorf("device %s holds %s, the image needs %s", o.Device, layout.Human(t.size), layout.Human(c.image.Size))
	}
	oem, ok := m.Partition(layout.LabelOEM)
	if o.UserData != nil && !ok {
		return nil, errors.New("the image manifest has no OEM partition to put the user-data in")
	}
	rootPart, ok := m.Partition(layout.LabelRoot)
	if !ok {
		return nil, errors.New("the image manifest has no ROOT partition")
	}
	if t.block {
		if err := checkSectorSize(t.path, m.Disk.SectorSize); err != nil {
			return nil, err
		}
	}

	logf("verifying %s (%s) against the manifest", o.Image, layout.Human(c.image.Size))
	st, err := stage(ctx, o.Client, o.Image, o.TempDir, c.image, step(o.Progress, "verify"))
	if err != nil {
		return nil, err
	}
	defer st.cleanup()
	if o.UserData != nil {
		has, err := oemUserData(ctx, ext4At(st.path, oem.Start))
		if err != nil {
			return nil, fmt.Errorf("reading the image's OEM partition: %v", err)
		}
		if has != "" {
			return nil, fmt.Errorf("the image's OEM partition already holds a %s (a platform's): pith install does not merge configs; pass the user-data through the platform's datasource instead", has)
		}
	}

	logf("writing %s to %s", layout.Human(c.image.Size), o.Device)
	start := time.Now()
	res.DataWritten, err = writeImage(ctx, st.path, t, c.image.Size, step(o.Progress, "write"))
	res.Write = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("%v: the disk is partly written; run pith install again", err)
	}
	logf("wrote %s of data in %.1fs (%.0f MB/s over the image's %s)", layout.Human(res.DataWritten), res.Write.Seconds(),
		float64(c.image.Size)/1e6/res.Write.Seconds(), layout.Human(c.image.Size))

	if t.size > c.image.Size {
		if err := growGPT(t.path, rootPart.Number, t.size, m.Disk.SectorSize); err != nil {
			return res, err
		}
		res.GrownTo = t.size
		logf("moved the backup GPT to the end of the %s disk; ROOT fills it (its filesystem grows on first boot)", layout.Human(t.size))
	}
	if o.UserData != nil {
		if err := writeOEMUserData(ctx, ext4At(t.path, oem.Start), oemName, o.UserData); err != nil {
			return res, err
		}
		logf("user-data (%d bytes) in the OEM partition's %s: first boot applies it", len(o.UserData), oemName)
	}
	if t.block {
		rereadPartitions(t.path, logf)
	}
	return res, nil
}

func trimZst(s string) string {
	if len(s) > 4 && s[len(s)-4:] == ".zst" {
		return s[:len(s)-4]
	}
	return s
}

func step(p func(string, int64, int64), name string) func(int64, int64) {
	if p == nil {
		return nil
	}
	return func(done, total int64) { p(name, done, total) }
}

// growGPT moves the backup GPT to the end of a disk larger than the image
// and grows partition n (ROOT, the last) to fill it, as the initramfs
// would on first boot; firmware that checks the backup header then finds
// it where it belongs.
func growGPT(path string, n int, diskSize int64, sectorSize int) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	tbl, err := pithinit.ReadGPT(f, int64(sectorSize))
	if err != nil {
		return fmt.Errorf("reading the written GPT: %v", err)
	}
	plan, err := tbl.PlanGrow(n, diskSize)
	if err != nil {
		return fmt.Errorf("growing ROOT: %v", err)
	}
	if err := tbl.Apply(f, plan); err != nil {
		return err
	}
	return f.Sync()
}

func checkSectorSize(path string, want int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil {
		return nil // unknown: the 512-byte image is the common case
	}
	if ss != want {
		return fmt.Errorf("device %s has %d-byte logical sectors, the image's GPT %d-byte ones", path, ss, want)
	}
	return nil
}

// rereadPartitions asks the kernel to read the new partition table.
func rereadPartitions(path string, logf func(string, ...any)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKRRPART, 0); e != 0 && e != unix.EINVAL {
		logf("warning: the kernel did not re-read %s's partitions (%v): reboot before using them", path, e)
	}
}
