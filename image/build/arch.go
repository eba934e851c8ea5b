package build

import (
	"fmt"
	"path/filepath"

	"github.com/pith-os/pith/image/config"
)

// checkTarget checks that the formats fit the platform and the
// architecture.
func checkTarget(c config.Config, secureBoot bool) error {
	if err := checkPlatformFormats(c); err != nil {
		return err
	}
	return checkArchSupport(c, secureBoot)
}

// checkArchSupport refuses, before any work, what an arm64 image cannot
// have yet: the live ISO/PXE (the host's amd64 BIOS GRUB, x86_64 EFI),
// a Secure Boot chain (not tried on AAVMF) and the vagrant platform (its
// boxes are x86_64). EC2 is allowed: pith ami registers an arm64 AMI
// booting UEFI, the only mode of Graviton instances.
func checkArchSupport(c config.Config, secureBoot bool) error {
	if c.Arch == config.DefaultArch {
		return nil
	}
	for _, f := range c.Formats {
		if f != "raw" && f != "qcow2" && f != "ec2" {
			return fmt.Errorf("format %s is amd64-only for now, this build is %s: use raw, qcow2 and/or ec2", f, c.Arch)
		}
	}
	if c.Platform != "qemu" && c.Platform != "ec2" {
		return fmt.Errorf("platform %s is amd64-only for now, this build is %s: use platform qemu or ec2", c.Platform, c.Arch)
	}
	if secureBoot {
		return fmt.Errorf("--secure-boot-keys is amd64-only for now, this build is %s", c.Arch)
	}
	return nil
}

// AgentDirFor is where make puts binaries of arch below the host's bin
// directory: bin itself for amd64, bin/linux_<arch> otherwise (as go
// install names a cross-compiled GOBIN).
func AgentDirFor(bin, arch string) string {
	if arch == "" || arch == config.DefaultArch {
		return bin
	}
	return filepath.Join(bin, "linux_"+arch)
}
