package bootloader

import "context"

// EFITarget is GRUB's UEFI image format for an architecture and the file
// name UEFI firmware boots from removable media (EFI/BOOT/<File>) when no
// boot entry is set, as on a fresh disk image.
type EFITarget struct{ Format, File string }

// efiTargets by machine architecture. arm64 machines boot UEFI only: they
// have no BIOS, and the BIOS-BOOT partition stays empty.
var efiTargets = map[string]EFITarget{
	"amd64": {"x86_64-efi", "BOOTX64.EFI"},
	"arm64": {"arm64-efi", "BOOTAA64.EFI"},
}

// EFIFor returns arch's UEFI target; an empty arch is amd64.
func EFIFor(arch string) (EFITarget, bool) {
	if arch == "" {
		arch = "amd64"
	}
	t, ok := efiTargets[arch]
	return t, ok
}

// EFIFile is the removable-media boot file name of arch (BOOTX64.EFI for
// amd64 and anything unknown, which MakeEFIArch refuses anyway).
func EFIFile(arch string) string {
	if t, ok := EFIFor(arch); ok {
		return t.File
	}
	return efiTargets["amd64"].File
}

// HasBIOS reports whether arch's machines may boot through a BIOS (GRUB's
// core.img in BIOS-BOOT): amd64 only.
func HasBIOS(arch string) bool { return arch == "" || arch == "amd64" }

// SerialConsole is the kernel's name of the first serial port: the 8250
// UART of PCs, the PL011 of QEMU's arm64 virt machine.
func SerialConsole(arch string) string {
	if arch == "arm64" {
		return "ttyAMA0"
	}
	return "ttyS0"
}

// SerialConsoleOn is SerialConsole on a platform: EC2's arm64 (Graviton)
// instances have a 16550-compatible UART, ttyS0, where EC2's console output
// and serial console read, not a PL011.
func SerialConsoleOn(platform, arch string) string {
	if platform == "ec2" {
		return "ttyS0"
	}
	return SerialConsole(arch)
}

// MakeEFIArch writes GRUB's UEFI image for arch with g (the zero Grub:
// the host's).
func MakeEFIArch(ctx context.Context, g Grub, arch, out, espUUID string, sec *SecureConfig) error {
	t, ok := EFIFor(arch)
	if !ok {
		return &archError{arch}
	}
	return mkimageFrom(ctx, g, t.Format, out, espUUID, sec)
}

type archError struct{ arch string }

func (e *archError) Error() string {
	return "bootloader: no UEFI GRUB target for architecture " + e.arch
}
