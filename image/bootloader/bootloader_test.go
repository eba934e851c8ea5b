package bootloader

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/node"
)

var params = Params{
	Version: "1.2.3", Platform: "qemu", Timeout: 1,
	USR:  map[string]string{"a": "AAAAAAAA-0000-5000-8000-000000000001", "b": "BBBBBBBB-0000-5000-8000-000000000002"},
	Root: "CCCCCCCC-0000-5000-8000-000000000003", OEM: "DDDDDDDD-0000-5000-8000-000000000004",
}

func TestKernelArgs(t *testing.T) {
	tests := []struct {
		slot  string
		extra []string
		want  string
	}{
		{"a", nil, "console=tty0 console=ttyS0,115200n8 panic=10 pith.slot=a pith.usr=PARTUUID=aaaaaaaa-0000-5000-8000-000000000001 pith.root=PARTUUID=cccccccc-0000-5000-8000-000000000003 pith.oem=PARTUUID=dddddddd-0000-5000-8000-000000000004 pith.platform=qemu"},
		{"b", []string{"pith.debug"}, "console=tty0 console=ttyS0,115200n8 panic=10 pith.slot=b pith.usr=PARTUUID=bbbbbbbb-0000-5000-8000-000000000002 pith.root=PARTUUID=cccccccc-0000-5000-8000-000000000003 pith.oem=PARTUUID=dddddddd-0000-5000-8000-000000000004 pith.platform=qemu pith.debug"},
	}
	for _, tc := range tests {
		p := params
		p.Extra = tc.extra
		if got := KernelArgs(p, tc.slot); got != tc.want {
			t.Errorf("slot %s:\n got %s\nwant %s", tc.slot, got, tc.want)
		}
		// A known root hash ends the line.
		p.UsrHash = map[string]string{tc.slot: strings.Repeat("ab", 32)}
		if got, want := KernelArgs(p, tc.slot), tc.want+" pith.usrhash="+strings.Repeat("ab", 32); got != want {
			t.Errorf("slot %s with a root hash:\n got %s\nwant %s", tc.slot, got, want)
		}
	}
}

// TestSerialConsole: the kernel's console is the platform's UART: the
// PL011 of QEMU's arm64 virt machine, the 16550 (ttyS0) of EC2 on both
// architectures (Graviton included) and of PCs.
func TestSerialConsole(t *testing.T) {
	for _, tc := range []struct{ platform, arch, want string }{
		{"qemu", "", "ttyS0"},
		{"qemu", "amd64", "ttyS0"},
		{"qemu", "arm64", "ttyAMA0"},
		{"vagrant", "amd64", "ttyS0"},
		{"ec2", "amd64", "ttyS0"},
		{"ec2", "arm64", "ttyS0"},
	} {
		p := params
		p.Platform, p.Arch = tc.platform, tc.arch
		if got := KernelArgs(p, "a"); !strings.HasPrefix(got, "console=tty0 console="+tc.want+",115200n8 ") {
			t.Errorf("%s/%s: %s, want console %s", tc.platform, tc.arch, got, tc.want)
		}
	}
}

// TestGrubSerialTerminal: GRUB's serial terminal is the PC UART (com0),
// which arm64 UEFI machines do not have (GRUB printed "serial port `com0'
// isn't found" on every arm64 boot); their firmware console is serial.
func TestGrubSerialTerminal(t *testing.T) {
	for _, tc := range []struct {
		arch string
		want bool
	}{{"", true}, {"amd64", true}, {"arm64", false}} {
		p := params
		p.Arch = tc.arch
		cfg, err := GrubCfg(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range []string{"serial --unit=0 ", "terminal_input console serial", "terminal_output console serial"} {
			if got := strings.Contains(string(cfg), line); got != tc.want {
				t.Errorf("arch %q: grub.cfg has %q: %v, want %v", tc.arch, line, got, tc.want)
			}
		}
	}
}

func TestVerityCfg(t *testing.T) {
	hash := strings.Repeat("0f", 32)
	for _, tc := range []struct {
		hash, err string
	}{
		{hash, ""},
		{strings.ToUpper(hash), "64 lowercase hex"},
		{hash[:62], "64 lowercase hex"},
		{hash[:63] + ";", "64 lowercase hex"}, // it is a GRUB script: nothing but hex
		{"", "64 lowercase hex"},
	} {
		b, err := VerityCfg(tc.hash)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("VerityCfg(%q) = %v, want error %q", tc.hash, err, tc.err)
			}
			continue
		}
		if err != nil || !strings.Contains(string(b), "\nset pith_usrhash="+hash+"\n") {
			t.Errorf("VerityCfg = %q, %v", b, err)
		}
		if _, err := exec.LookPath("grub-script-check"); err == nil {
			f := filepath.Join(t.TempDir(), "verity-b.cfg")
			os.WriteFile(f, b, 0o644)
			if out, err := exec.Command("grub-script-check", f).CombinedOutput(); err != nil {
				t.Errorf("grub-script-check: %v: %s", err, out)
			}
		}
	}
	if VerityCfgPath("b") != "pith/verity-b.cfg" {
		t.Errorf("VerityCfgPath(b) = %s", VerityCfgPath("b"))
	}
}

func TestGrubCfg(t *testing.T) {
	cfg, err := GrubCfg(params)
	if err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	for _, want := range []string{
		`menuentry "Pith slot A" --id a --unrestricted {`, `menuentry "Pith slot B" --id b --unrestricted {`,
		"linux /pith/vmlinuz-a " + KernelArgs(params, "a") + " ${pith_kargs} pith.usrhash=${pith_usrhash}\n", "initrd /pith/initrd-b",
		"source /pith/verity-a.cfg\n", "source /pith/verity-b.cfg\n",
		"load_env --skip-sig -f ${prefix}/grubenv pith_gen pith_gen_end", "load_env --skip-sig -f ${prefix}/grubenv.1 pith_gen pith_gen_end",
		`if [ "${pith_gen1}" -gt "${pith_gen0}" ]; then set pith_env=grubenv.1; fi`, "save_env -f ${prefix}/${pith_env} next_entry", `set default="${saved_entry}"`, "set timeout=1",
		"save_env -f ${prefix}/${pith_env} saved_entry pith_boot", `if [ -f "/pith/verity-${pith_other}.cfg" ]; then`,
		"terminal_output console serial", "set fallback=0", "set fallback=1",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, s)
		}
	}
	// GRUB's own parser accepts it.
	grubScriptCheck(t, cfg)
	p := params
	p.USR = map[string]string{"a": "x"}
	if _, err := GrubCfg(p); err == nil {
		t.Error("missing slot b accepted")
	}
}

// TestGrubCfgKargs: both slots append the machine's own arguments, loaded
// from the ESP alone of the file's variables; a Secure Boot image's
// grub.cfg (signed) first matches each against the allowlist.
func TestGrubCfgKargs(t *testing.T) {
	if KargsVar != node.KargsVar || "grub/"+KargsFile != node.KargsFile {
		t.Fatalf("grub.cfg reads grub/%s's %s, pith-init writes %s's %s", KargsFile, KargsVar, node.KargsFile, node.KargsVar)
	}
	load := "load_env --skip-sig -f ${prefix}/kargs pith_kargs\n"
	filter := "if regexp '" + node.SecureBootKargs + "' \"${pith_karg}\"; then\n"
	lines := []string{
		"set pith_kargs=\n", "if [ -f ${prefix}/kargs ]; then\n  " + load,
		"linux /pith/vmlinuz-a " + KernelArgs(params, "a") + " ${pith_kargs} pith.usrhash=${pith_usrhash}\n",
		"linux /pith/vmlinuz-b " + KernelArgs(params, "b") + " ${pith_kargs} pith.usrhash=${pith_usrhash}\n",
	}
	for _, tc := range []struct {
		name       string
		secureBoot bool
		has, lacks []string
	}{
		{"plain", false, lines, []string{"regexp"}},
		{"secure boot", true, append([]string{filter, "for pith_karg in ${pith_kargs}; do\n"}, lines...), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := params
			p.SecureBoot = tc.secureBoot
			cfg, err := GrubCfg(p)
			if err != nil {
				t.Fatal(err)
			}
			s := string(cfg)
			for _, want := range tc.has {
				if !strings.Contains(s, want) {
					t.Errorf("grub.cfg lacks %q:\n%s", want, s)
				}
			}
			for _, bad := range tc.lacks {
				if strings.Contains(s, bad) {
					t.Errorf("grub.cfg has %q:\n%s", bad, s)
				}
			}
			// Loaded (and filtered) after the A/B choice, before the
			// entries use it.
			for _, step := range []string{load, filter} {
				if i := strings.Index(s, step); i >= 0 && (i < strings.Index(s, "set fallback=") || i > strings.Index(s, "menuentry")) {
					t.Errorf("%q is not between the A/B choice and the entries", step)
				}
			}
			grubScriptCheck(t, cfg)
		})
	}
}

// grubScriptCheck runs GRUB's own parser on a script, where it is installed.
func grubScriptCheck(t *testing.T, script []byte) {
	t.Helper()
	if _, err := exec.LookPath("grub-script-check"); err != nil {
		return
	}
	f := filepath.Join(t.TempDir(), "grub.cfg")
	if err := os.WriteFile(f, script, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("grub-script-check", f).CombinedOutput(); err != nil {
		t.Errorf("grub-script-check: %v: %s", err, out)
	}
}

func TestBootCodeAndCore(t *testing.T) {
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		t.Fatal("grub-mkimage not installed: run make deps")
	}
	const lba = 264192
	code, err := BootCode(lba)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(filepath.Join(GrubLib, "i386-pc", "boot.img"))
	if len(code) != 440 || binary.LittleEndian.Uint64(code[0x5c:]) != lba || !bytes.Equal(code[0x66:0x68], []byte{0x90, 0x90}) {
		t.Errorf("boot code not patched: len %d lba %d check % x", len(code), binary.LittleEndian.Uint64(code[0x5c:]), code[0x66:0x68])
	}
	// Only the documented fields differ from GRUB's boot.img.
	for i := range code {
		inBPB := i >= 3 && i < 0x5a
		patched := (i >= 0x5c && i < 0x64) || i == 0x66 || i == 0x67
		if !inBPB && !patched && code[i] != orig[i] {
			t.Errorf("byte %#x changed", i)
		}
	}

	core, err := MakeCore(context.Background(), t.TempDir(), "CAFE-1234", lba, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	bl := core[500:512]
	sectors := (len(core) + 511) / 512
	if binary.LittleEndian.Uint64(bl) != lba+1 || int(binary.LittleEndian.Uint16(bl[8:])) != sectors-1 || binary.LittleEndian.Uint16(bl[10:]) != 0x820 {
		t.Errorf("blocklist % x for %d sectors", bl, sectors)
	}
	if err := PatchCore(core, lba); err == nil {
		t.Error("patching twice accepted")
	}
	if _, err := MakeCore(context.Background(), t.TempDir(), "CAFE-1234", lba, 4096); err == nil || !strings.Contains(err.Error(), "more than BIOS-BOOT") {
		t.Errorf("oversized core accepted: %v", err)
	}

	efi := filepath.Join(t.TempDir(), "BOOTX64.EFI")
	if err := MakeEFI(context.Background(), efi, "CAFE-1234", nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(efi)
	if len(b) < 1024 || string(b[:2]) != "MZ" {
		t.Error("BOOTX64.EFI is not a PE image")
	}
	if !bytes.Contains(b, []byte("--fs-uuid --set=root CAFE-1234")) {
		t.Error("early config not embedded in BOOTX64.EFI")
	}
	if bytes.Contains(b, []byte("check_signatures=enforce")) {
		t.Error("unsigned BOOTX64.EFI enforces signatures")
	}

	// The Secure Boot image: signature checks on before the ESP is read,
	// the key embedded, and the pgp verifier in.
	pub := filepath.Join(t.TempDir(), "grub.pub")
	key := []byte("\x99pith-test-public-key-bytes")
	os.WriteFile(pub, key, 0o644)
	if err := MakeEFI(context.Background(), efi, "CAFE-1234", &SecureConfig{PubKey: pub}); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(efi)
	early := bytes.Index(b, []byte("set check_signatures=enforce"))
	if early < 0 || early > bytes.Index(b, []byte("--fs-uuid --set=root CAFE-1234")) {
		t.Error("Secure Boot BOOTX64.EFI does not set check_signatures=enforce before finding the ESP")
	}
	if !bytes.Contains(b, []byte("set superusers=pith-locked")) {
		t.Error("Secure Boot BOOTX64.EFI leaves GRUB's command line open")
	}
	if !bytes.Contains(b, key) || !bytes.Contains(b, []byte("verify_detached")) {
		t.Error("Secure Boot BOOTX64.EFI lacks the embedded key or the pgp module")
	}
}

// MakeEFIArch runs the Grub's own grub-mkimage on its own modules (2.12's
// mkimage with 2.12's modules, never the host's 2.06 mkimage), the zero
// Grub the host's.
func TestMakeEFIArchGrub(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "lib")
	os.MkdirAll(filepath.Join(lib, "x86_64-efi"), 0o755)
	os.WriteFile(filepath.Join(lib, "x86_64-efi", "kernel.img"), nil, 0o644)
	argsFile := filepath.Join(dir, "args")
	mk := filepath.Join(dir, "grub-mkimage")
	os.WriteFile(mk, []byte("#!/bin/sh\necho \"$@\" > "+argsFile+"\n"), 0o755)
	g := Grub{Lib: lib, MkImage: mk, Version: "2.12-1~bpo12+1"}
	if err := MakeEFIArch(context.Background(), g, "amd64", filepath.Join(dir, "BOOTX64.EFI"), "CAFE-1234", &SecureConfig{PubKey: "k.pub"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatalf("the Grub's grub-mkimage did not run: %v", err)
	}
	for _, want := range []string{"-O x86_64-efi -d " + filepath.Join(lib, "x86_64-efi") + " ", " --disable-shim-lock --pubkey k.pub ", " linux "} {
		if !strings.Contains(" "+string(b), want) {
			t.Errorf("grub-mkimage %s: lacks %q", b, want)
		}
	}
	os.WriteFile(mk, []byte("#!/bin/sh\necho broken >&2; exit 1\n"), 0o755)
	if err := MakeEFIArch(context.Background(), g, "amd64", filepath.Join(dir, "BOOTX64.EFI"), "CAFE-1234", nil); err == nil || !strings.Contains(err.Error(), mk+" -O x86_64-efi") || !strings.Contains(err.Error(), "broken") {
		t.Errorf("a failing grub-mkimage: %v", err)
	}
}
