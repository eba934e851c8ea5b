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

// tcgCPU is the amd64 model under TCG: QEMU's default qemu64 (an AMD
// vendor, so the guest kernel turns on no Meltdown or MDS workarounds)
// raised to x86-64-v2 (SSSE3, SSE4.1/4.2, POPCNT, CMPXCHG16B), with AES-NI
// and PCLMULQDQ for TLS and RDRAND (the kernel's RNG is ready at once, as
// on real machines). The "max" model costs more to emulate for the same
// guest: a boot to the login prompt took 10% more QEMU CPU time and a
// sha256sum of USR-A 15% more (hack/tcg-cpu.sh, medians; README). Intel
// models without the ARCH_CAPABILITIES bits (Nehalem-v2) cost far more:
// their kernel isolates page tables, and every switch flushes TCG's TLB.
const tcgCPU = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16,+aes,+pclmulqdq,+rdrand"

// cpuModel is QEMU's -cpu: PITH_QEMU_CPU when set (e.g. max, for a
// feature tcgCPU lacks), else under KVM the host's, under TCG tcgCPU on
// amd64. On arm64 the "max" model with pointer authentication on QEMU's
// implementation-defined algorithm instead of the architected QARMA: the
// guest cannot tell (PAC values are opaque to it), and Debian's kernel signs
// every return address, which QARMA makes several times slower to emulate.
func (c Config) cpuModel() string {
	switch {
	case os.Getenv("PITH_QEMU_CPU") != "":
		return os.Getenv("PITH_QEMU_CPU")
	case c.Accel.Name == "kvm":
		return "host"
	case c.Arch == "arm64":
		return "max,pauth-impdef=on"
	}
	return tcgCPU
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
