package live

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"debug/pe"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/rootfs"
	"github.com/pith-os/pith/image/secureboot"
)

// TestPXEEFI builds pith-pxe.efi and reads it as the firmware and GRUB
// would: an x86-64 PE32+ EFI application whose memdisk holds grub.cfg
// with the iPXE script's kernel line and the PXE file names.
func TestPXEEFI(t *testing.T) {
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		t.Fatal("grub-mkimage is needed (make deps installs it)")
	}
	if _, err := os.Stat(filepath.Join(bootloader.GrubLib, "x86_64-efi", "kernel.img")); err != nil {
		t.Fatal("grub-efi-amd64-bin is needed (make deps installs it)")
	}
	k := testKeys(t)
	for _, tc := range []struct {
		name, disk, args string
		keys             *secureboot.Keys
	}{
		{"console kept, disk arguments dropped", "console=tty0 console=ttyS0,115200n8 panic=10 pith.slot=a pith.usr=PARTUUID=3d85 pith.platform=qemu pith.usrhash=" + hash,
			"console=tty0 console=ttyS0,115200n8 panic=10 pith.live pith.usrhash=" + hash, nil},
		{"no disk line", "", "pith.live pith.usrhash=" + hash, nil},
		{"secure boot", "", "pith.live pith.usrhash=" + hash, k},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := fakeParts(t)
			p.Cmdline = tc.disk
			dir := t.TempDir()
			if err := PXEEFI(context.Background(), p, bootloader.Grub{}, dir, t.TempDir(), 1767225600, tc.keys); err != nil {
				t.Fatal(err)
			}
			img, err := os.ReadFile(filepath.Join(dir, PXEEFIName))
			if err != nil {
				t.Fatal(err)
			}
			f, err := pe.NewFile(bytes.NewReader(img))
			if err != nil {
				t.Fatalf("%s is not a PE file: %v", PXEEFIName, err)
			}
			oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
			if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 || !ok || oh.Subsystem != pe.IMAGE_SUBSYSTEM_EFI_APPLICATION {
				t.Fatalf("%s: machine %#x, optional header %T, want an x86-64 PE32+ EFI application", PXEEFIName, f.Machine, f.OptionalHeader)
			}
			if !bytes.Contains(img, []byte(pxeEFIPrefix+"\x00")) {
				t.Errorf("%s does not embed the prefix %s", PXEEFIName, pxeEFIPrefix)
			}
			cfg, sig := embeddedGrubCfg(t, img)
			source := "\n  source \"$pith_pxe_from/pith-pxe.cfg\"\n"
			// Signed: the firmware takes it (db), it enforces signatures
			// with GRUB's key, its own config among them.
			signed := secureboot.VerifyEFI(k.Certs["db"].Raw, img) == nil
			enforces := bytes.Contains(img, []byte("set check_signatures=enforce"))
			if signed != (tc.keys != nil) || enforces != (tc.keys != nil) || (sig != nil) != (tc.keys != nil) {
				t.Errorf("signed by db %v, enforcing %v, grub.cfg.sig %v; want %v", signed, enforces, sig != nil, tc.keys != nil)
			}
			if tc.keys != nil {
				pub, _ := os.ReadFile(k.GrubPub())
				if err := secureboot.VerifyDetached(pub, []byte(cfg), sig); err != nil {
					t.Errorf("the memdisk's grub.cfg.sig: %v", err)
				}
			}
			for _, want := range []string{
				"\nlinux \"$pith_pxe_base/pith-pxe.vmlinuz\" " + tc.args + " $pith_pxe_args\n",
				"\ninitrd \"$pith_pxe_base/pith-pxe.initrd\"\nboot\n",
				"\nset pith_pxe_from=\"$cmdpath\"\n",
				source,
				"Pith 1.2.3 live",
			} {
				if !strings.Contains(cfg, want) {
					t.Errorf("embedded grub.cfg lacks %q:\n%s", want, cfg)
				}
			}
			again := t.TempDir()
			if err := PXEEFI(context.Background(), p, bootloader.Grub{}, again, t.TempDir(), 1767225600, tc.keys); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(again, PXEEFIName)); !bytes.Equal(b, img) {
				t.Errorf("two builds of %s from the same parts differ", PXEEFIName)
			}
		})
	}
}

// embeddedGrubCfg finds the memdisk's tar in a GRUB image (stored as is:
// x86_64-efi modules are not compressed) and returns its grub.cfg and
// grub.cfg.sig (nil if none).
func embeddedGrubCfg(t *testing.T, img []byte) (string, []byte) {
	t.Helper()
	// The ustar header of the archive's first file after the two
	// directories starts with its name.
	i := bytes.Index(img, []byte("boot/grub/grub.cfg\x00"))
	if i < 0 {
		t.Fatal("no boot/grub/grub.cfg tar header in the image")
	}
	tr := tar.NewReader(bytes.NewReader(img[i:]))
	h, err := tr.Next()
	if err != nil || h.Name != "boot/grub/grub.cfg" {
		t.Fatalf("tar header at %d: %v %v", i, h, err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	var sig []byte
	if h, err := tr.Next(); err == nil && h.Name == "boot/grub/grub.cfg"+secureboot.SigSuffix {
		if sig, err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
	return string(b), sig
}

// TestPXEGrubCfgRuns runs pith-pxe.efi's config in GRUB itself (grub-emu
// of the image's UEFI GRUB, 2.12, and of the build host's, which an image
// without an SBOM gets; $cmdpath a host directory standing for the TFTP
// server; linux, initrd and boot printed instead of run): the files come
// from $cmdpath unless pith-pxe.cfg there names another base and arguments.
// With $cmdpath empty, as GRUB 2.12 leaves it under iPXE's UEFI PXE, they
// come from the DHCP answer's server and the boot file's directory.
func TestPXEGrubCfgRuns(t *testing.T) {
	if _, err := exec.LookPath("grub-emu"); err != nil {
		t.Fatal("grub-emu is needed (make deps installs it)")
	}
	uefi, err := rootfs.TestGrubEmu(context.Background(), t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	emus := map[string]func(args ...string) *exec.Cmd{
		"uefi-grub": func(args ...string) *exec.Cmd { return uefi.Command(context.Background(), args...) },
		"host-grub": func(args ...string) *exec.Cmd { return exec.Command("grub-emu", args...) },
	}
	p := fakeParts(t)
	// emuCfg is the config as grub-emu can run it: no serial console, and
	// linux, initrd and boot printed.
	emuCfg := func(secure bool) string {
		cfg, err := PXEGrubCfg(p, secure)
		if err != nil {
			t.Fatal(err)
		}
		emu := regexp.MustCompile(`(?m)^(serial|terminal_input|terminal_output) .*$`).ReplaceAllString(string(cfg), "")
		emu = regexp.MustCompile(`(?m)^(linux|initrd) (.*)$`).ReplaceAllString(emu, "echo RESULT $1 $2 END")
		return strings.Replace(emu, "\nboot\n", "\nreboot\n", 1)
	}
	// The Secure Boot GRUB: GRUB's key trusted, signatures enforced, and
	// an override signed (pith live sign) or not.
	k := testKeys(t)
	enforce := "trust (host)" + k.GrubPub() + "\nset check_signatures=enforce\n"
	const args = "pith.live pith.usrhash=" + hash
	// What efinet sets from the PXE DHCP answer.
	dhcp := func(bootFile string) string {
		return "set cmdpath=\nset net_default_server=10.0.2.2\nset net_default_interface=efinet0\nset net_efinet0_boot_file=" + bootFile + "\n"
	}
	for _, tc := range []struct {
		name, override string
		preset         string   // GRUB's variables; "" sets $cmdpath to the TFTP directory
		want           []string // with TFTP for the $cmdpath directory
		secure, signed bool     // the Secure Boot config and GRUB; the override signed
	}{
		{"from the boot file's server", "", "", []string{
			"RESULT linux TFTP/pith-pxe.vmlinuz " + args, "RESULT initrd TFTP/pith-pxe.initrd"}, false, false},
		{"pith-pxe.cfg names an HTTP base and user-data",
			"set pith_pxe_base=(http,10.0.2.100:8080)/pith\nset pith_pxe_args=\"pith.config.url=http://10.0.2.100:8080/ud\"\n", "", []string{
				"RESULT linux (http,10.0.2.100:8080)/pith/pith-pxe.vmlinuz " + args + " pith.config.url=http://10.0.2.100:8080/ud",
				"RESULT initrd (http,10.0.2.100:8080)/pith/pith-pxe.initrd"}, false, false},
		{"an empty pith-pxe.cfg", " ", "", []string{
			"RESULT linux TFTP/pith-pxe.vmlinuz " + args, "RESULT initrd TFTP/pith-pxe.initrd"}, false, false},
		{"no $cmdpath: the DHCP answer's server", "", dhcp("pith-pxe.efi"), []string{
			"RESULT linux (tftp,10.0.2.2)/pith-pxe.vmlinuz " + args, "RESULT initrd (tftp,10.0.2.2)/pith-pxe.initrd"}, false, false},
		{"no $cmdpath: a boot file named from the root", "", dhcp("/pith-pxe.efi"), []string{
			"RESULT linux (tftp,10.0.2.2)/pith-pxe.vmlinuz " + args, "RESULT initrd (tftp,10.0.2.2)/pith-pxe.initrd"}, false, false},
		{"no $cmdpath: the boot file's directory", "", dhcp("/boot/pith/pith-pxe.efi"), []string{
			"RESULT linux (tftp,10.0.2.2)/boot/pith/pith-pxe.vmlinuz " + args, "RESULT initrd (tftp,10.0.2.2)/boot/pith/pith-pxe.initrd"}, false, false},
		{"secure boot: a signed pith-pxe.cfg", "set pith_pxe_base=(http,10.0.2.100:8080)/pith\n", "", []string{
			"RESULT linux (http,10.0.2.100:8080)/pith/pith-pxe.vmlinuz " + args, "RESULT initrd (http,10.0.2.100:8080)/pith/pith-pxe.initrd"}, true, true},
		{"secure boot: an unsigned pith-pxe.cfg is ignored", "set pith_pxe_base=(http,10.0.2.100:8080)/pith\n", "", []string{
			"RESULT linux TFTP/pith-pxe.vmlinuz " + args, "RESULT initrd TFTP/pith-pxe.initrd"}, true, false},
	} {
		for _, emuName := range []string{"uefi-grub", "host-grub"} {
			if tc.secure && emuName != "uefi-grub" {
				continue // pith-pxe.efi is signed only with the image's UEFI GRUB
			}
			t.Run(emuName+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				tftp := filepath.Join(dir, "tftp")
				prefix := filepath.Join(dir, "prefix")
				for _, d := range []string{tftp, prefix} {
					if err := os.MkdirAll(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				if tc.override != "" {
					if err := os.WriteFile(filepath.Join(tftp, PXEEFIOverride), []byte(tc.override), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				if tc.signed {
					if err := k.SignFileHash(filepath.Join(tftp, PXEEFIOverride), time.Now(), crypto.SHA512); err != nil {
						t.Fatal(err)
					}
				}
				cmdpath := "(host)" + tftp
				preset := tc.preset
				if preset == "" {
					preset = "set cmdpath=" + cmdpath + "\n"
				}
				if tc.secure {
					preset += enforce
				}
				if err := os.WriteFile(filepath.Join(prefix, "grub.cfg"), []byte(preset+emuCfg(tc.secure)), 0o644); err != nil {
					t.Fatal(err)
				}
				out, _ := emus[emuName]("-d", prefix, "-r", "host").CombinedOutput()
				// grub-emu wraps its output at 80 columns.
				flat := strings.NewReplacer("\r", "", "\n", "").Replace(string(out))
				var got []string
				for _, m := range regexp.MustCompile(`RESULT (.*?) END`).FindAllStringSubmatch(flat, -1) {
					got = append(got, "RESULT "+strings.ReplaceAll(strings.Join(strings.Fields(m[1]), " "), cmdpath, "TFTP"))
				}
				if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
					t.Errorf("grub-emu printed\n%s\nwant\n%s\n(output:\n%s)", strings.Join(got, "\n"), strings.Join(tc.want, "\n"), out)
				}
				if ignored := strings.Contains(flat, "no signed "+PXEEFIOverride); ignored != (tc.secure && !tc.signed) {
					t.Errorf("the override-ignored line: %v, want %v (output:\n%s)", ignored, tc.secure && !tc.signed, out)
				}
			})
		}
	}
}
