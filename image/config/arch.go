package config

import (
	"fmt"
	"slices"
	"strings"
)

// DefaultKernelFor is Debian's cloud kernel metapackage of an architecture
// (linux-image-cloud-amd64, linux-image-cloud-arm64).
func DefaultKernelFor(arch string) string { return "linux-image-cloud-" + arch }

// SetArch switches the config to arch; a kernel that is the default of the
// old architecture becomes the new one's default (pith build --arch).
func (c *Config) SetArch(arch string) {
	if c.KernelPackage == DefaultKernelFor(c.Arch) || c.KernelPackage == "" {
		c.KernelPackage = DefaultKernelFor(arch)
	}
	c.Arch = arch
}

// QEMUArch is the kernel's and QEMU's name of the architecture (uname -m):
// x86_64, aarch64.
func QEMUArch(arch string) string {
	switch arch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return arch
}

func (c Config) nonDefaultArch() string {
	if c.Arch == DefaultArch {
		return ""
	}
	return c.Arch
}

// checkArch also catches a kernel package of Debian's other architecture
// flavour (linux-image-cloud-amd64 in an arm64 image): it would install,
// and the image would never boot.
func checkArch(arch, kernel string) error {
	if err := checkEnum(arch, Arches, "machine architecture"); err != nil {
		return err
	}
	for _, other := range Arches {
		if other != arch && strings.HasSuffix(kernel, "-"+other) {
			return fmt.Errorf("debian.kernel %s is an %s kernel, the image is %s: use %s", kernel, other, arch, DefaultKernelFor(arch))
		}
	}
	return nil
}

// ValidArch reports whether arch is one pith builds images for.
func ValidArch(arch string) bool { return slices.Contains(Arches, arch) }
