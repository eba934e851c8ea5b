// Package build runs `pith build`: the rootfs (image/rootfs), the initramfs
// (initramfs), then the filesystems, boot chain and disk of the image
// (Assemble), writing pith.img, pith.qcow2 and pith.manifest.json.
package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/disk"
	"github.com/pith-os/pith/image/fsimg"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/slot"
)

// Artifact names in the output directory.
const (
	RawName   = "pith.img"
	Qcow2Name = "pith.qcow2"
)

// RootSize is the size of ROOT's filesystem in the image; the initramfs
// grows it (and its partition) to the disk on first boot.
const RootSize = 256 * layout.MiB

// SquashfsLevel is USR-A's zstd level. Measured on the default /usr
// (537 MiB, 2 busy cores): level 3 gives 192 MB in 10 s, 6 gives 181 MB in
// 20 s, 8 gives 180 MB in 30 s, 12 gives 179 MB in 127 s.
const SquashfsLevel = 6

// Inputs are what Assemble turns into an image.
type Inputs struct {
	Config        config.Config
	UsrDir        string // becomes USR-A
	KernelPath    string // vmlinuz
	KernelVersion string
	InitrdPath    string
	AgentSHA256   string // recorded in the manifest
	// UsrHash identifies UsrDir's content (rootfs.TreeHash). With CacheDir
	// set, USR images are cached under it by this hash, so an unchanged
	// tree is not compressed again.
	UsrHash  string
	CacheDir string
}

// Seed names the build inputs that all GUIDs and filesystem UUIDs derive
// from: the rootfs inputs plus what shapes the disk.
func Seed(c config.Config) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", c.Hash(), c.Platform, c.DiskSize))
	return hex.EncodeToString(h[:16])
}

// CheckFormats rejects formats this builder cannot write yet.
func CheckFormats(formats []string) error {
	for _, f := range formats {
		if f != "raw" && f != "qcow2" && f != "ec2" {
			return fmt.Errorf("output format %q is not built yet: set formats to raw, qcow2 and/or ec2", f)
		}
	}
	return nil
}

// checkPlatformFormats rejects outputs that do not fit the platform: the
// ec2 format is the disk `pith ami upload` imports (pith.img, the raw GPT
// disk ImportSnapshot takes as format RAW), and an AMI of an image built for
// another platform would boot without EC2's datasource and kernel settings.
func checkPlatformFormats(c config.Config) error {
	if has(c.Formats, "ec2") && c.Platform != "ec2" {
		return fmt.Errorf("format ec2 needs the ec2 platform, this build is for %s: add --platform ec2 (or platform: ec2 in the config)", c.Platform)
	}
	return nil
}

// wantsRaw reports whether pith.img is an output: raw, or the ec2 import disk.
func wantsRaw(formats []string) bool { return has(formats, "raw") || has(formats, "ec2") }

// platformArgs are the kernel arguments a platform needs beyond the
// common ones (the serial console on ttyS0 is common: EC2's console
// output and serial console read ttyS0 too).
var platformArgs = map[string][]string{
	// EBS volumes are NVMe devices on Nitro instances; AWS asks for the
	// longest NVMe I/O timeout so a slow EBS path is waited out instead of
	// failing I/O (which would turn ROOT read-only).
	"ec2": {"nvme_core.io_timeout=4294967295"},
}

// PlatformModules are the drivers an image for the platform cannot boot
// or reach its network without; the build fails if the kernel has them
// neither built in nor as modules. EC2: NVMe (EBS and instance store on
// Nitro), ENA (Nitro networking), xen-blkfront (older Xen-based types).
var PlatformModules = map[string][]string{
	"ec2": {"nvme", "ena", "xen_blkfront"},
}

// checkPlatformModules names the platform's required drivers that the
// initramfs build found absent from the kernel.
func checkPlatformModules(platform, kernel string, absent []string) error {
	var missing []string
	for _, m := range PlatformModules[platform] {
		if has(absent, m) {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kernel %s lacks %s, needed on %s: use a kernel package that has them (debian.kernel: %s)", kernel, strings.Join(missing, ", "), platform, config.DefaultKernelPackage)
	}
	return nil
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Assemble builds the partition contents and the disk in workDir and returns
// the artifacts (temporary paths in workDir, keyed by final name) and the
// manifest. Nothing is written outside workDir.
func Assemble(ctx context.Context, in Inputs, workDir string, r *Reporter) (map[string]string, *manifest.Manifest, error) {
	c := in.Config
	if err := CheckFormats(c.Formats); err != nil {
		return nil, nil, err
	}
	if err := checkPlatformFormats(c); err != nil {
		return nil, nil, err
	}
	seed := Seed(c)
	table, err := layout.New(c.DiskSize, seed)
	if err != nil {
		return nil, nil, err
	}
	part := table.MustLabel
	w := func(name string) string { return filepath.Join(workDir, name) }
	fsUUID := func(label string) string { return layout.DeriveUUID(seed, "fs/"+label) }
	hashSeed := func(label string) string { return layout.DeriveUUID(seed, "fs/"+label+"/hash_seed") }
	espVolID := layout.DeriveVolumeID(seed, "fs/"+layout.LabelESP)
	espSerial := fsimg.VfatSerial(espVolID)

	// USR-A: squashfs of /usr.
	var usrImg string
	err = r.Step("USR-A squashfs", func() (string, error) {
		var cached bool
		var err error
		usrImg, cached, err = usrImage(ctx, in, workDir, r)
		if err != nil {
			return "", err
		}
		st, err := os.Stat(usrImg)
		if err != nil {
			return "", err
		}
		if err := table.CheckFits(map[string]int64{layout.LabelUSRA: st.Size()}); err != nil {
			return "", err
		}
		how := fmt.Sprintf("zstd -%d", SquashfsLevel)
		if cached {
			how = "cached, same /usr tree as " + filepath.Base(usrImg)
		}
		return fmt.Sprintf("%s, %s", layout.Human(st.Size()), how), nil
	})
	if err != nil {
		return nil, nil, err
	}

	// Boot chain.
	bios := part(layout.LabelBIOSBoot)
	var core, bootCode []byte
	params := bootloader.Params{
		Version: c.Version, Platform: c.Platform, Timeout: 1,
		USR:  map[string]string{"a": part(layout.LabelUSRA).GUID, "b": part(layout.LabelUSRB).GUID},
		Root: part(layout.LabelRoot).GUID, OEM: part(layout.LabelOEM).GUID,
		Extra: platformArgs[c.Platform],
	}
	err = r.Step("boot loader", func() (string, error) {
		if err := bootloader.MakeEFI(ctx, w("BOOTX64.EFI"), espSerial); err != nil {
			return "", err
		}
		if core, err = bootloader.MakeCore(ctx, workDir, espSerial, bios.FirstLBA(), bios.Size); err != nil {
			return "", err
		}
		if bootCode, err = bootloader.BootCode(bios.FirstLBA()); err != nil {
			return "", err
		}
		cfg, err := bootloader.GrubCfg(params)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(w("grub.cfg"), cfg, 0o644); err != nil {
			return "", err
		}
		env, err := slot.InitialEnv().Encode()
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(w("grubenv"), env, 0o644); err != nil {
			return "", err
		}
		return fmt.Sprintf("BIOS core.img %s, UEFI BOOTX64.EFI, A/B grub.cfg", layout.Human(int64(len(core)))), nil
	})
	if err != nil {
		return nil, nil, err
	}

	// ESP, OEM, ROOT.
	espImg, oemImg, rootImg := w("esp.vfat"), w("oem.ext4"), w("root.ext4")
	err = r.Step("ESP, OEM and ROOT filesystems", func() (string, error) {
		files := []fsimg.File{
			{Src: w("BOOTX64.EFI"), Dst: "EFI/BOOT/BOOTX64.EFI"},
			{Src: w("grub.cfg"), Dst: "grub/grub.cfg"},
			{Src: w("grubenv"), Dst: "grub/grubenv"},
			{Src: in.KernelPath, Dst: "pith/vmlinuz-a"},
			{Src: in.InitrdPath, Dst: "pith/initrd-a"},
		}
		if err := fsimg.Vfat(ctx, espImg, part(layout.LabelESP).Size, layout.LabelESP, espVolID, files, c.Epoch); err != nil {
			return "", err
		}
		oemDir := w("oem")
		if err := os.MkdirAll(filepath.Join(oemDir, "pith"), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(oemDir, "pith", "platform"), []byte(c.Platform+"\n"), 0o644); err != nil {
			return "", err
		}
		if err := fsimg.Ext4(ctx, oemImg, part(layout.LabelOEM).Size, layout.LabelOEM, fsUUID(layout.LabelOEM), hashSeed(layout.LabelOEM), oemDir, c.Epoch); err != nil {
			return "", err
		}
		rootSize := min(RootSize, part(layout.LabelRoot).Size)
		if err := fsimg.Ext4(ctx, rootImg, rootSize, layout.LabelRoot, fsUUID(layout.LabelRoot), hashSeed(layout.LabelRoot), "", c.Epoch); err != nil {
			return "", err
		}
		return fmt.Sprintf("ESP vfat %s, OEM ext4 (platform %s), ROOT ext4 %s", espSerial, c.Platform, layout.Human(rootSize)), nil
	})
	if err != nil {
		return nil, nil, err
	}

	// The raw disk.
	raw := w(RawName)
	attrA, _ := slot.InitialA.Apply(0)
	attrB, _ := slot.InitialB.Apply(0)
	attrs := map[string]uint64{layout.LabelUSRA: attrA, layout.LabelUSRB: attrB}
	var written []disk.Written
	err = r.Step("disk "+RawName, func() (string, error) {
		start := time.Now()
		bar := r.Bar(0, "disk")
		var err error
		written, err = disk.Write(ctx, raw, disk.Options{
			Table: table,
			Contents: []disk.Content{
				{Label: layout.LabelESP, Path: espImg},
				{Label: layout.LabelBIOSBoot, Data: core},
				{Label: layout.LabelUSRA, Path: usrImg},
				{Label: layout.LabelOEM, Path: oemImg},
				{Label: layout.LabelRoot, Path: rootImg},
			},
			Attributes: attrs,
			BootCode:   bootCode,
			Progress: func(done, total int64) {
				bar.ChangeMax64(total)
				bar.Set64(done)
			},
		})
		bar.Finish()
		if err != nil {
			return "", err
		}
		var content int64
		for _, wr := range written {
			content += wr.Size
		}
		return fmt.Sprintf("%s disk, %s of partition content copied at %s, %s allocated",
			layout.Human(c.DiskSize), layout.Human(content), rate(content, time.Since(start)), layout.Human(allocated(raw))), nil
	})
	if err != nil {
		return nil, nil, err
	}
	artifacts := map[string]string{}
	if wantsRaw(c.Formats) {
		artifacts[RawName] = raw
	}
	// Hash the raw image while qemu-img converts it: two processes, two cores.
	type hashed struct {
		size int64
		sum  string
		err  error
	}
	rawHash := make(chan hashed, 1)
	go func() {
		if !wantsRaw(c.Formats) {
			rawHash <- hashed{}
			return
		}
		n, sum, err := manifest.HashFile(raw)
		rawHash <- hashed{n, sum, err}
	}()
	if has(c.Formats, "qcow2") {
		q := w(Qcow2Name)
		err = r.Step("qcow2 "+Qcow2Name, func() (string, error) {
			start := time.Now()
			bar := r.Bar(100, "qcow2")
			err := disk.Qcow2(ctx, raw, q, func(p float64) { bar.Set(int(p)) })
			bar.Finish()
			if err != nil {
				return "", err
			}
			st, err := os.Stat(q)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s compressed, %s of raw data read at %s", layout.Human(st.Size()), layout.Human(allocated(raw)), rate(allocated(raw), time.Since(start))), nil
		})
		if err != nil {
			<-rawHash
			return nil, nil, err
		}
		artifacts[Qcow2Name] = q
	}

	// The manifest.
	m := &manifest.Manifest{
		Schema: manifest.SchemaVersion, Version: c.Version, Platform: c.Platform,
		Inputs: manifest.Inputs{
			ConfigHash: c.Hash(), Suite: c.Suite, Mirror: config.NormalizeMirror(c.Mirror),
			Packages: append([]string{}, c.Packages...), KernelPackage: c.KernelPackage,
			DiskSize: c.DiskSize, Formats: append([]string{}, c.Formats...), SourceDateEpoch: c.Epoch,
			AgentSHA256: in.AgentSHA256,
		},
		KernelVersion: in.KernelVersion,
		KernelCmdline: map[string]string{"a": bootloader.KernelArgs(params, "a"), "b": bootloader.KernelArgs(params, "b")},
		Disk:          manifest.Disk{Size: table.DiskSize, SectorSize: layout.SectorSize, GUID: table.DiskGUID},
	}
	fsInfo := map[string][2]string{
		layout.LabelESP:  {"vfat", espSerial},
		layout.LabelUSRA: {"squashfs", ""},
		layout.LabelOEM:  {"ext4", strings.ToLower(fsUUID(layout.LabelOEM))},
		layout.LabelRoot: {"ext4", strings.ToLower(fsUUID(layout.LabelRoot))},
	}
	emptySum := sha256.Sum256(nil)
	for _, p := range table.Partitions {
		mp := manifest.Partition{Partition: p, Attributes: fmt.Sprintf("%016X", attrs[p.Label]),
			Filesystem: fsInfo[p.Label][0], FSUUID: fsInfo[p.Label][1], ContentSHA256: hex.EncodeToString(emptySum[:])}
		for _, wr := range written {
			if wr.Label == p.Label {
				mp.ContentSize, mp.ContentSHA256 = wr.Size, wr.SHA256
			}
		}
		m.Disk.Partitions = append(m.Disk.Partitions, mp)
	}
	err = r.Step("SHA-256 of artifacts", func() (string, error) {
		rh := <-rawHash
		if rh.err != nil {
			return "", rh.err
		}
		if wantsRaw(c.Formats) {
			m.Artifacts = append(m.Artifacts, manifest.Artifact{Name: RawName, Format: "raw", Size: rh.size, SHA256: rh.sum})
		}
		if q, ok := artifacts[Qcow2Name]; ok {
			n, sum, err := manifest.HashFile(q)
			if err != nil {
				return "", err
			}
			m.Artifacts = append(m.Artifacts, manifest.Artifact{Name: Qcow2Name, Format: "qcow2", Size: n, SHA256: sum})
		}
		return fmt.Sprintf("%d artifacts", len(m.Artifacts)), nil
	})
	if err != nil {
		return nil, nil, err
	}
	b, err := m.Encode()
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(w(manifest.FileName), b, 0o644); err != nil {
		return nil, nil, err
	}
	artifacts[manifest.FileName] = w(manifest.FileName)
	return artifacts, m, nil
}

// allocated is the bytes a (sparse) file really occupies.
func allocated(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// rate formats a throughput.
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		d = time.Millisecond
	}
	return layout.Human(int64(float64(n)/d.Seconds())) + "/s"
}

// Allocated is exported for the summary and the benchmark.
func Allocated(path string) int64 { return allocated(path) }

// explain turns low-level write failures into the one-line errors users
// need, naming the fix. External tools (mksquashfs, qemu-img, mkfs) report
// a full disk only in their own words, so an almost full output filesystem
// after a failure is taken as the cause too.
func explain(err error, outDir string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || checkFree(outDir, 64*layout.MiB) != nil {
		return fmt.Errorf("no space left on the device holding %s (a build needs about %s free there): free space or choose another --out", outDir, layout.Human(MinFree))
	}
	return err
}
