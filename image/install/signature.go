package install

import (
	"bytes"
	"encoding/binary"
	"io"
)

// signature is what a disk's first bytes say it holds: a magic number at
// an offset, as blkid finds them (libblkid's probes are the reference for
// the offsets). Only the start of the disk is read: RAID superblocks at
// its end (md 0.90/1.0) are not seen.
type signature struct {
	what   string // "an ext2/3/4 filesystem": completes "holds ..."
	offset int64
	magic  []byte
}

var signatures = []signature{
	{"a LUKS encrypted volume", 0, []byte("LUKS\xba\xbe")},
	{"an XFS filesystem", 0, []byte("XFSB")},
	{"a squashfs filesystem", 0, []byte("hsqs")},
	{"a Linux RAID member (md 1.1)", 0, []byte{0xfc, 0x4e, 0x2b, 0xa9}},
	{"an LVM physical volume", 512, []byte("LABELONE")},
	{"an ext2/3/4 filesystem", 1080, []byte{0x53, 0xef}},
	{"a Linux RAID member (md 1.2)", 4096, []byte{0xfc, 0x4e, 0x2b, 0xa9}},
	{"a swap area", 4086, []byte("SWAPSPACE2")},
	{"a swap area", 65526, []byte("SWAPSPACE2")}, // 64 KiB pages (arm64)
	{"an ISO 9660 filesystem", 32769, []byte("CD001")},
	{"a btrfs filesystem", 65600, []byte("_BHRfS_M")},
}

// probeLen covers every signature above.
const probeLen = 65600 + 8

// diskContents names what the start of r holds ("a GPT partition table",
// "an XFS filesystem", ...), or "" when it recognizes nothing: an install
// over any of them without --force is refused, as one over a partition
// table always was.
func diskContents(r io.ReaderAt) string {
	b := make([]byte, probeLen)
	n, _ := r.ReadAt(b, 0)
	b = b[:n]
	at := func(off int64, magic []byte) bool {
		return int64(len(b)) >= off+int64(len(magic)) && bytes.Equal(b[off:off+int64(len(magic))], magic)
	}
	if at(512, []byte("EFI PART")) {
		return "a GPT partition table"
	}
	// A FAT boot sector ends in 0x55AA like an MBR: tell them apart by
	// the file system type string before reading partition entries.
	if at(510, []byte{0x55, 0xaa}) && (at(54, []byte("FAT1")) || at(82, []byte("FAT32"))) {
		return "a FAT filesystem"
	}
	if at(510, []byte{0x55, 0xaa}) {
		for i := 0; i < 4; i++ {
			e := b[446+16*i : 446+16*(i+1)]
			if e[4] != 0 && binary.LittleEndian.Uint32(e[12:]) != 0 {
				return "an MBR partition table"
			}
		}
	}
	for _, s := range signatures {
		if at(s.offset, s.magic) {
			return s.what
		}
	}
	return ""
}
