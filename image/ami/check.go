package ami

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
)

// GUIDs of the partitions the boot modes need (mixed-endian as on disk is
// handled by guidString).
const (
	espType      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	biosBootType = "21686148-6449-6E6F-744E-656564454649"
)

const sector = 512

// DiskInfo is what CheckImage learned about a raw disk image.
type DiskInfo struct {
	Size       int64
	Partitions int  // non-empty GPT entries
	HasESP     bool // EFI system partition (UEFI boot)
	HasBIOS    bool // BIOS boot partition (GRUB core.img, legacy BIOS boot)
}

// containerMagic names image formats that are not raw. EC2 can import some
// of them, but pith ami uploads the raw image only, so any of these means
// the wrong file was passed.
var containerMagic = []struct {
	off   int64
	magic string
	name  string
}{
	{0, "QFI\xfb", "qcow2"},
	{0, "KDMV", "VMDK"},
	{0, "vhdxfile", "VHDX"},
	{0, "\x1f\x8b", "gzip"},
	{0, "\xfd7zXZ\x00", "xz"},
	{0, "\x28\xb5\x2f\xfd", "zstd"},
	{0, "BZh", "bzip2"},
}

// CheckImage verifies that path is a raw GPT disk image with consistent
// primary and backup headers and partition arrays, and that it has the
// partitions bootMode needs, before anything is uploaded: EC2 reports a bad
// image only after the upload and a long import.
func CheckImage(path, bootMode string) (DiskInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return DiskInfo{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return DiskInfo{}, err
	}
	info := DiskInfo{Size: st.Size()}
	if !st.Mode().IsRegular() {
		return info, fmt.Errorf("%s is not a regular file: pass the raw image (pith.img)", path)
	}
	head := make([]byte, 2*sector)
	if _, err := f.ReadAt(head, 0); err != nil && err != io.EOF {
		return info, err
	}
	for _, m := range containerMagic {
		if bytes.HasPrefix(head[m.off:], []byte(m.magic)) {
			return info, fmt.Errorf("%s is a %s file, not a raw disk image: pass the raw image (pith.img from pith build)", path, m.name)
		}
	}
	if info.Size < 68*sector || info.Size%sector != 0 {
		return info, fmt.Errorf("%s is %d bytes, not a whole number of 512-byte sectors large enough for a GPT: the image is truncated or not a disk image", path, info.Size)
	}
	if info.Size >= sector {
		tail := make([]byte, sector)
		if _, err := f.ReadAt(tail, info.Size-sector); err == nil && bytes.HasPrefix(tail, []byte("conectix")) {
			return info, fmt.Errorf("%s is a VHD file, not a raw disk image: pass the raw image (pith.img from pith build)", path)
		}
	}
	if head[510] != 0x55 || head[511] != 0xaa {
		return info, fmt.Errorf("%s has no MBR boot signature: not a raw disk image (or a corrupt one)", path)
	}
	protective := false
	for i := 0; i < 4; i++ {
		if head[446+16*i+4] == 0xee {
			protective = true
		}
	}
	if !protective {
		return info, fmt.Errorf("%s has an MBR without a protective GPT entry: Pith images are GPT disks, rebuild with pith build", path)
	}
	lastLBA := uint64(info.Size/sector - 1)
	primary, err := readGPT(f, 1, lastLBA)
	if err != nil {
		return info, fmt.Errorf("%s: primary GPT: %v", path, err)
	}
	if primary.alternate != lastLBA {
		return info, fmt.Errorf("%s: the GPT says the disk ends at sector %d but the file ends at sector %d: the image was truncated or resized without fixing its GPT (sgdisk -e)", path, primary.alternate, lastLBA)
	}
	backup, err := readGPT(f, lastLBA, lastLBA)
	if err != nil {
		return info, fmt.Errorf("%s: backup GPT at the last sector: %v (truncated or corrupt image)", path, err)
	}
	if backup.entriesCRC != primary.entriesCRC {
		return info, fmt.Errorf("%s: primary and backup GPT partition arrays differ: corrupt image", path)
	}
	for _, e := range primary.entries {
		info.Partitions++
		switch e {
		case espType:
			info.HasESP = true
		case biosBootType:
			info.HasBIOS = true
		}
	}
	if info.Partitions == 0 {
		return info, fmt.Errorf("%s has an empty partition table: not a Pith image", path)
	}
	switch bootMode {
	case "uefi":
		if !info.HasESP {
			return info, fmt.Errorf("%s has no EFI system partition, so --boot-mode uefi cannot boot it: use --boot-mode legacy-bios", path)
		}
	case "legacy-bios":
		if !info.HasBIOS {
			return info, fmt.Errorf("%s has no BIOS boot partition, so --boot-mode legacy-bios cannot boot it: use --boot-mode uefi", path)
		}
	case "uefi-preferred":
		if !info.HasESP || !info.HasBIOS {
			return info, fmt.Errorf("%s needs both an EFI system and a BIOS boot partition for --boot-mode uefi-preferred", path)
		}
	}
	return info, nil
}

type gpt struct {
	alternate  uint64
	entriesCRC uint32
	entries    []string // type GUIDs of the non-empty entries
}

// readGPT reads and checks the GPT header at lba and its partition array
// (UEFI spec 2.10, section 5.3).
func readGPT(f io.ReaderAt, lba, lastLBA uint64) (gpt, error) {
	var g gpt
	h := make([]byte, sector)
	if _, err := f.ReadAt(h, int64(lba)*sector); err != nil {
		return g, err
	}
	if string(h[:8]) != "EFI PART" {
		return g, fmt.Errorf("no \"EFI PART\" signature at sector %d", lba)
	}
	le := binary.LittleEndian
	hsize := le.Uint32(h[12:])
	if hsize < 92 || hsize > sector {
		return g, fmt.Errorf("header size %d out of range", hsize)
	}
	want := le.Uint32(h[16:])
	c := append([]byte(nil), h[:hsize]...)
	clear(c[16:20])
	if got := crc32.ChecksumIEEE(c); got != want {
		return g, fmt.Errorf("header CRC32 %08x, computed %08x: corrupt", want, got)
	}
	if my := le.Uint64(h[24:]); my != lba {
		return g, fmt.Errorf("header at sector %d says it is at sector %d", lba, my)
	}
	g.alternate = le.Uint64(h[32:])
	entLBA := le.Uint64(h[72:])
	n := le.Uint32(h[80:])
	esize := le.Uint32(h[84:])
	if esize < 128 || esize%8 != 0 || n == 0 || n > 1024 {
		return g, fmt.Errorf("partition array of %d entries of %d bytes is not valid", n, esize)
	}
	if entLBA < 2 || entLBA > lastLBA {
		return g, fmt.Errorf("partition array at sector %d lies outside the disk", entLBA)
	}
	arr := make([]byte, int(n)*int(esize))
	if _, err := f.ReadAt(arr, int64(entLBA)*sector); err != nil {
		return g, fmt.Errorf("partition array: %v", err)
	}
	g.entriesCRC = le.Uint32(h[88:])
	if got := crc32.ChecksumIEEE(arr); got != g.entriesCRC {
		return g, fmt.Errorf("partition array CRC32 %08x, computed %08x: corrupt", g.entriesCRC, got)
	}
	for i := 0; i < int(n); i++ {
		e := arr[i*int(esize):]
		if allZero(e[:16]) {
			continue
		}
		g.entries = append(g.entries, guidString(e[:16]))
	}
	return g, nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// guidString renders an on-disk GUID (first three fields little-endian).
func guidString(b []byte) string {
	le := binary.LittleEndian
	return strings.ToUpper(fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		le.Uint32(b[0:]), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16]))
}
