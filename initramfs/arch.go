package initramfs

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

func (o Options) arch() string {
	if o.Arch == "" {
		return "amd64"
	}
	return o.Arch
}

// checkArch refuses an init built for another architecture than the
// kernel's: the kernel would panic with "No working init found". It reads
// e_machine of a little-endian ELF header; anything shorter than the
// header is left to checkStatic.
func checkArch(p, arch string) error {
	want, ok := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if !ok {
		return fmt.Errorf("initramfs: no architecture %q: use amd64 or arm64", arch)
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("initramfs: init binary %s: %v", p, err)
	}
	defer f.Close()
	var hdr [20]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return nil
	}
	if got := elf.Machine(binary.LittleEndian.Uint16(hdr[18:])); got != want {
		return fmt.Errorf("initramfs: init binary %s is built for %v, the image is %s: build it with GOARCH=%s CGO_ENABLED=0 (make bin-%s)", p, got, arch, arch, arch)
	}
	return nil
}
