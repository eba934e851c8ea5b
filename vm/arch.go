package vm

import (
	"fmt"
	"os"
	"runtime"
)

// Default AAVMF files (Debian's qemu-efi-aarch64): the arm64 build of the
// UEFI firmware OVMF is for amd64; both are 64 MiB pflash images.
var (
	AAVMFCode = "/usr/share/AAVMF/AAVMF_CODE.fd"
	AAVMFVars = "/usr/share/AAVMF/AAVMF_VARS.fd"
)

// archDefaults completes an arm64 machine: qemu-system-aarch64, QEMU's virt
// board, UEFI (arm64 has no BIOS), and TCG unless the host is arm64 (KVM
// runs guests of the host's architecture only). It runs before the other
// defaults, so an empty firmware becomes UEFI, not BIOS.
func (c *Config) archDefaults() error {
	switch c.Arch {
	case "", "amd64":
		return nil
	case "arm64":
	default:
		return fmt.Errorf("arch %q: use amd64 or arm64", c.Arch)
	}
	switch c.Firmware {
	case "":
		c.Firmware = UEFI
	case UEFI:
	default:
		return fmt.Errorf("firmware %q: arm64 machines boot UEFI only (AAVMF)", c.Firmware)
	}
	if c.QEMU == "" {
		c.QEMU = "qemu-system-aarch64"
	}
	if runtime.GOARCH != "arm64" {
		c.Accel = Accel{Name: "tcg", Reason: "an arm64 guest on a " + runtime.GOARCH + " host"}
	}
	if c.CDROM != "" || c.SecureBoot != nil {
		return fmt.Errorf("arm64 machines: no CD-ROM or Secure Boot yet (amd64 only)")
	}
	return nil
}

// cpuModel is QEMU's -cpu. Under KVM the host's; under TCG the "max"
// model, which has what current userspace expects (x86-64-v2 and AVX on
// amd64). On arm64 its pointer authentication uses QEMU's
// implementation-defined algorithm instead of the architected QARMA: the
// guest cannot tell (PAC values are opaque to it), and Debian's kernel signs
// every return address, which QARMA makes several times slower to emulate.
func (c Config) cpuModel() string {
	switch {
	case c.Accel.Name == "kvm":
		return "host"
	case c.Arch == "arm64":
		return "max,pauth-impdef=on"
	}
	return "max"
}

// machineType is QEMU's -machine of the architecture.
func (c Config) machineType() string {
	if c.Arch == "arm64" {
		return "virt"
	}
	return "q35"
}

// uefiFiles are the firmware code and empty variable store.
func (c Config) uefiFiles() (code, vars string) {
	if c.Arch == "arm64" {
		return AAVMFCode, AAVMFVars
	}
	return OVMFCode, OVMFVars
}

// firmwarePackage names the Debian package holding uefiFiles.
func (c Config) firmwarePackage() string {
	if c.Arch == "arm64" {
		return "qemu-efi-aarch64"
	}
	return "ovmf"
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
