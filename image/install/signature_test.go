package install

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDiskContents: each signature at its offset in an otherwise zero
// disk is named; zeros, a FAT boot sector and an MBR are told apart.
func TestDiskContents(t *testing.T) {
	at := func(off int, magic ...[]byte) []byte {
		b := make([]byte, 1<<17)
		for _, m := range magic {
			copy(b[off:], m)
		}
		return b
	}
	mbr := make([]byte, 1<<17)
	mbr[510], mbr[511] = 0x55, 0xaa
	mbr[446+4] = 0x83
	binary.LittleEndian.PutUint32(mbr[446+12:], 2048)
	fat := make([]byte, 1<<17)
	fat[510], fat[511] = 0x55, 0xaa
	copy(fat[82:], "FAT32   ")
	fat[446+4], fat[446+12] = 0x0c, 1 // boot code that looks like an entry
	for _, tc := range []struct {
		name string
		disk []byte
		want string
	}{
		{"zeros", make([]byte, 1<<17), ""},
		{"short", []byte("hsq"), ""},
		{"gpt", at(512, []byte("EFI PART")), "a GPT partition table"},
		{"mbr", mbr, "an MBR partition table"},
		{"fat32", fat, "a FAT filesystem"},
		{"55aa without entries", at(510, []byte{0x55, 0xaa}), ""},
		{"ext4", at(1080, []byte{0x53, 0xef}), "an ext2/3/4 filesystem"},
		{"xfs", at(0, []byte("XFSB")), "an XFS filesystem"},
		{"btrfs", at(65600, []byte("_BHRfS_M")), "a btrfs filesystem"},
		{"swap 4k", at(4086, []byte("SWAPSPACE2")), "a swap area"},
		{"swap 64k", at(65526, []byte("SWAPSPACE2")), "a swap area"},
		{"luks", at(0, []byte("LUKS\xba\xbe")), "a LUKS encrypted volume"},
		{"lvm", at(512, []byte("LABELONE")), "an LVM physical volume"},
		{"md 1.2", at(4096, []byte{0xfc, 0x4e, 0x2b, 0xa9}), "a Linux RAID member (md 1.2)"},
		{"iso9660", at(32769, []byte("CD001")), "an ISO 9660 filesystem"},
		{"squashfs", at(0, []byte("hsqs")), "a squashfs filesystem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := diskContents(bytes.NewReader(tc.disk)); got != tc.want {
				t.Errorf("diskContents = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDiskContentsRealTools: what the standard tools write is recognized
// (each tool that is installed: make deps installs them).
func TestDiskContentsRealTools(t *testing.T) {
	for _, tc := range []struct {
		tool string
		args []string
		want string
	}{
		{"mkfs.ext4", []string{"-q", "-F"}, "an ext2/3/4 filesystem"},
		{"mkfs.vfat", nil, "a FAT filesystem"},
		{"mkswap", nil, "a swap area"},
		{"mkfs.xfs", []string{"-q", "-f"}, "an XFS filesystem"},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			bin, err := exec.LookPath(tc.tool)
			if err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("%s not installed (make deps installs it)", tc.tool)
				}
				t.Skipf("%s not installed (make deps installs it)", tc.tool)
			}
			disk := filepath.Join(t.TempDir(), "disk")
			if err := os.WriteFile(disk, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(disk, 400<<20); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, append(tc.args, disk)...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", tc.tool, err, out)
			}
			f, err := os.Open(disk)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := diskContents(f); got != tc.want {
				t.Errorf("after %s: diskContents = %q, want %q", tc.tool, got, tc.want)
			}
		})
	}
}
