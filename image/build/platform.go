package build

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pith-os/pith/image/config"
)

// CheckFormats rejects formats this builder cannot write yet.
func CheckFormats(formats []string) error {
	for _, f := range formats {
		if f != "raw" && f != "qcow2" && f != "ec2" && f != "iso" && f != "pxe" {
			return fmt.Errorf("output format %q is not built yet: set formats to raw, qcow2, ec2, iso and/or pxe", f)
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

// wantsRaw reports whether pith.img is an output: raw, the ec2 import
// disk, or the image the live ISO/PXE artifacts are made from (and install).
func wantsRaw(formats []string) bool {
	return has(formats, "raw") || has(formats, "ec2") || has(formats, "iso") || has(formats, "pxe")
}

// platformArgs are the kernel arguments a platform needs beyond the
// common ones (the serial console is common: ttyS0 on EC2, where its
// console output and serial console read, on arm64 too; see
// bootloader.SerialConsoleOn).
var platformArgs = map[string][]string{
	// EBS volumes are NVMe devices on Nitro instances; AWS asks for the
	// longest NVMe I/O timeout so a slow EBS path is waited out instead of
	// failing I/O (which would turn ROOT read-only).
	"ec2": {"nvme_core.io_timeout=4294967295"},
}

// PlatformModules are the drivers an image for the platform cannot boot
// or reach its network without; the build fails if the kernel has them
// neither built in nor as modules. EC2: NVMe (EBS and instance store on
// Nitro), ENA (Nitro networking), xen-blkfront (older Xen-based types,
// all x86_64: see modulesFor).
var PlatformModules = map[string][]string{
	"ec2": {"nvme", "ena", "xen_blkfront"},
}

// modulesFor is PlatformModules[platform] for an image of arch: EC2's arm64
// (Graviton) instances are all Nitro, so they need no xen-blkfront.
func modulesFor(platform, arch string) []string {
	mods := PlatformModules[platform]
	if platform == "ec2" && arch == "arm64" {
		mods = slices.DeleteFunc(slices.Clone(mods), func(m string) bool { return m == "xen_blkfront" })
	}
	return mods
}

// checkPlatformModules names the platform's required drivers for arch
// that the initramfs build found absent from the kernel.
func checkPlatformModules(platform, arch, kernel string, absent []string) error {
	var missing []string
	for _, m := range modulesFor(platform, arch) {
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
