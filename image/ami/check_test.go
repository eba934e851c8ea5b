package ami

import (
	"github.com/pith-os/pith/image/ami/amitest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckImage(t *testing.T) {
	both := amitest.GPTImage(t, 8<<20, true, true)
	espOnly := amitest.GPTImage(t, 8<<20, true, false)
	biosOnly := amitest.GPTImage(t, 8<<20, false, true)

	dir := t.TempDir()
	variant := func(name string, edit func(b []byte) []byte) string {
		b, err := os.ReadFile(both)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, edit(b), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	truncated := variant("truncated.img", func(b []byte) []byte { return b[:len(b)-1<<20] })
	grown := variant("grown.img", func(b []byte) []byte { return append(b, make([]byte, 1<<20)...) })
	oddSize := variant("odd.img", func(b []byte) []byte { return b[:len(b)-100] })
	entryFlip := variant("entry.img", func(b []byte) []byte { b[1024+40] ^= 1; return b }) // first LBA of partition 1
	headerFlip := variant("header.img", func(b []byte) []byte { b[512+40] ^= 1; return b })
	backupFlip := variant("backup.img", func(b []byte) []byte { b[len(b)-512+40] ^= 1; return b })
	noMBR := variant("nombr.img", func(b []byte) []byte { b[510] = 0; return b })
	zeros := variant("zeros.img", func(b []byte) []byte { return make([]byte, len(b)) })
	qcow2 := filepath.Join(dir, "pith.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", both, qcow2).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	vmdk := filepath.Join(dir, "pith.vmdk")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vmdk", both, vmdk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	vhd := filepath.Join(dir, "pith.vhd")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", both, vhd).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		name, path, mode, err string
	}{
		{"both uefi-preferred", both, "uefi-preferred", ""},
		{"both uefi", both, "uefi", ""},
		{"both bios", both, "legacy-bios", ""},
		{"esp uefi", espOnly, "uefi", ""},
		{"esp bios", espOnly, "legacy-bios", "no BIOS boot partition"},
		{"esp preferred", espOnly, "uefi-preferred", "needs both"},
		{"bios uefi", biosOnly, "uefi", "no EFI system partition"},
		{"bios bios", biosOnly, "legacy-bios", ""},
		{"truncated", truncated, "uefi", "truncated or resized"},
		{"grown", grown, "uefi", "sgdisk -e"},
		{"odd size", oddSize, "uefi", "512-byte sectors"},
		{"entry corrupt", entryFlip, "uefi", "partition array CRC32"},
		{"header corrupt", headerFlip, "uefi", "primary GPT: header CRC32"},
		{"backup corrupt", backupFlip, "uefi", "backup GPT"},
		{"no mbr", noMBR, "uefi", "no MBR boot signature"},
		{"zeros", zeros, "uefi", "no MBR boot signature"},
		{"qcow2", qcow2, "uefi", "is a qcow2 file"},
		{"vmdk", vmdk, "uefi", "is a VMDK file"},
		{"vhd", vhd, "uefi", "is a VHD file"},
		{"directory", dir, "uefi", "not a regular file"},
		{"missing", filepath.Join(dir, "nope.img"), "uefi", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := CheckImage(tc.path, tc.mode)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("CheckImage: %v", err)
				}
				if info.Partitions < 2 || info.Size != 8<<20 {
					t.Fatalf("info %+v", info)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
}
