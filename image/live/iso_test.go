package live

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/secureboot"
)

// testKeys makes a Secure Boot key set (pith keygen --secure-boot's).
func testKeys(t *testing.T) *secureboot.Keys {
	t.Helper()
	dir := t.TempDir()
	if err := secureboot.Generate(dir, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	k, err := secureboot.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// isoFile extracts path from the ISO.
func isoFile(t *testing.T, iso, path string) []byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	if out, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", path, dst).CombinedOutput(); err != nil {
		t.Fatalf("extracting %s: %v: %s", path, err, out)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestISO builds the hybrid ISO, unsigned and signed for Secure Boot, and
// checks its El Torito catalogue (a BIOS and a UEFI entry), its MBR for
// USB sticks, the live boot entry, that the same inputs give the same
// bytes, and, signed, that BOOTX64.EFI passes the firmware's check against
// db and every file GRUB reads has a good signature by GRUB's key.
func TestISO(t *testing.T) {
	for _, tool := range []string{"xorriso", "mformat", "mcopy", "grub-mkimage", "sbsign", "faketime"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: make deps installs it", tool)
		}
	}
	k := testKeys(t)
	p := fakeParts(t)
	for _, tc := range []struct {
		name string
		keys *secureboot.Keys
	}{{"unsigned", nil}, {"secure-boot", k}} {
		t.Run(tc.name, func(t *testing.T) {
			var isos [2][]byte
			var iso string
			for i := range isos {
				work := t.TempDir()
				iso = filepath.Join(work, ISOName)
				if err := ISO(context.Background(), p, iso, work, 1767225600, Boot{Keys: tc.keys}); err != nil {
					t.Fatal(err)
				}
				isos[i], _ = os.ReadFile(iso)
			}
			if !bytes.Equal(isos[0], isos[1]) {
				t.Error("two builds from the same inputs differ")
			}
			out, err := exec.Command("xorriso", "-indev", iso, "-report_el_torito", "plain", "-report_system_area", "plain").CombinedOutput()
			if err != nil {
				t.Fatalf("xorriso: %v: %s", err, out)
			}
			for _, want := range []string{"El Torito boot img :   1  BIOS", "El Torito boot img :   2  UEFI", "MBR partition table", "Volume id    : 'PITH_LIVE'"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("ISO report lacks %q:\n%s", want, out)
				}
			}
			cfg := isoFile(t, iso, "/boot/grub/grub.cfg")
			if !strings.Contains(string(cfg), "linux /pith/vmlinuz pith.live pith.usrhash="+hash) || !strings.Contains(string(cfg), "initrd /pith/initrd /pith/usr.cpio") {
				t.Errorf("grub.cfg:\n%s", cfg)
			}
			if debug := strings.Contains(string(cfg), "pith.debug"); debug != (tc.keys == nil) {
				t.Errorf("grub.cfg has the pith.debug entry: %v, want %v (none under Secure Boot)", debug, tc.keys == nil)
			}

			efiImg := filepath.Join(t.TempDir(), "efi.img")
			os.WriteFile(efiImg, isoFile(t, iso, "/"+isoEFIImage), 0o644)
			efi := filepath.Join(t.TempDir(), "BOOTX64.EFI")
			if out, err := exec.Command("mcopy", "-i", efiImg, "::/EFI/BOOT/BOOTX64.EFI", efi).CombinedOutput(); err != nil {
				t.Fatalf("BOOTX64.EFI from the EFI image: %v: %s", err, out)
			}
			pe, _ := os.ReadFile(efi)
			db := k.Certs["db"].Raw
			if err := secureboot.VerifyEFI(db, pe); (err == nil) != (tc.keys != nil) {
				t.Errorf("BOOTX64.EFI against db: %v (signed: %v)", err, tc.keys != nil)
			}
			if tc.keys == nil {
				return
			}
			pub, _ := os.ReadFile(k.GrubPub())
			for _, f := range []string{"/boot/grub/grub.cfg", "/pith/vmlinuz", "/pith/initrd", "/pith/usr.cpio"} {
				if err := secureboot.VerifyDetached(pub, isoFile(t, iso, f), isoFile(t, iso, f+secureboot.SigSuffix)); err != nil {
					t.Errorf("%s's signature: %v", f, err)
				}
			}
		})
	}
}
