package bootloader

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/slot"
)

// grubEmu is one GRUB build's emulator: grub.cfg runs under the build
// host's GRUB 2.06 (the BIOS core.img) and under the UEFI GRUB images
// boot (2.12 from bookworm-backports).
type grubEmu struct {
	name    string
	command func(args ...string) *exec.Cmd
}

// UEFIGrubEmu returns the command of grub-emu of the images' UEFI GRUB.
// Set by grubemu_uefi_test.go (package bootloader_test), which can import
// rootfs: rootfs imports this package.
var UEFIGrubEmu func(t *testing.T) func(args ...string) *exec.Cmd

// grubEmus returns both GRUB builds' emulators.
func grubEmus(t *testing.T) []grubEmu {
	t.Helper()
	if _, err := exec.LookPath("grub-emu"); err != nil {
		t.Fatalf("grub-emu is needed (make deps installs it): %v", err)
	}
	if UEFIGrubEmu == nil {
		t.Fatal("no UEFI grub-emu: grubemu_uefi_test.go sets UEFIGrubEmu")
	}
	host := func(args ...string) *exec.Cmd { return exec.Command("grub-emu", args...) }
	return []grubEmu{{"bios-host-grub", host}, {"uefi-grub", UEFIGrubEmu(t)}}
}

// grubRun runs the top of grub.cfg (everything before the menu entries)
// in GRUB itself (emu) against a FAT image holding the ESP's files, as one
// boot would, and returns the RESULT line it prints.
func grubRun(t *testing.T, emu grubEmu, dir string) string {
	t.Helper()
	out, _ := emu.command("-d", filepath.Join(dir, "prefix"), "-m", filepath.Join(dir, "device.map"), "-r", "host").CombinedOutput()
	m := regexp.MustCompile(`(?:falling back to slot \w\s*)?RESULT [^\r\n]*`).Find(out)
	if m == nil {
		t.Fatalf("grub-emu (%s) printed no RESULT:\n%s", emu.name, out)
	}
	return strings.Join(strings.Fields(string(m)), " ")
}

// The boot counting of grub.cfg, run by both GRUBs on a FAT ESP with
// grubenv in its two copies: the saved slot is counted on every boot and,
// after three that nothing cleared, the other slot takes over if it has a
// root hash file; a trial is not counted.
func TestGrubBootCounting(t *testing.T) {
	head := grubCfgHead(t, params) + "echo \"RESULT default=${default} saved=${saved_entry} next=${next_entry} boot=${pith_boot}\"\nreboot\n"

	emus := grubEmus(t)
	for _, tc := range []struct {
		name    string
		next    string // a pending trial
		verityB bool   // slot b has a root hash file
		want    []string
	}{
		{"falls back after three", "", true, []string{
			"RESULT default=a saved=a next= boot=a1", "RESULT default=a saved=a next= boot=a2", "RESULT default=a saved=a next= boot=a3",
			"falling back to slot b RESULT default=b saved=b next= boot=b1", "RESULT default=b saved=b next= boot=b2"}},
		{"no verified slot to fall back to", "", false, []string{
			"RESULT default=a saved=a next= boot=a1", "RESULT default=a saved=a next= boot=a2", "RESULT default=a saved=a next= boot=a3",
			"RESULT default=a saved=a next= boot=a3"}},
		{"a trial is not counted", "b", true, []string{
			"RESULT default=b saved=a next= boot=", "RESULT default=a saved=a next= boot=a1"}},
	} {
		for _, emu := range emus {
			t.Run(emu.name+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				esp := grubESP(t, dir, head)
				// grubenv as a node has it after updates: two copies, the
				// second newer (slot writes the older copy each time).
				env := filepath.Join(dir, "grubenv")
				e := slot.InitialEnv()
				for range 2 {
					if err := slot.WriteEnvFile(env, e); err != nil {
						t.Fatal(err)
					}
				}
				e.Set(slot.KeyNext, tc.next)
				if err := slot.WriteEnvFile(env, e); err != nil {
					t.Fatal(err)
				}
				files := []string{env, env + slot.EnvCopySuffix}
				run(t, "mcopy", append([]string{"-i", esp}, append(files, "::grub/")...)...)
				for _, s := range []string{"a", "b"} {
					if s == "b" && !tc.verityB {
						continue
					}
					b, _ := VerityCfg(strings.Repeat("ab", 32))
					p := filepath.Join(dir, VerityCfgPath(s)[len("pith/"):])
					os.WriteFile(p, b, 0o644)
					run(t, "mcopy", "-i", esp, p, "::pith/")
				}
				for i, want := range tc.want {
					if got := grubRun(t, emu, dir); got != want {
						t.Fatalf("boot %d: %q, want %q", i+1, got, want)
					}
				}
			})
		}
	}
}

// grubCfgHead is p's grub.cfg up to its menu entries, for grub-emu: no
// serial console, and the ESP as the emulator's (hd0).
func grubCfgHead(t *testing.T, p Params) string {
	t.Helper()
	for _, tool := range []string{"mkfs.vfat", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps installs it): %v", tool, err)
		}
	}
	cfg, err := GrubCfg(p)
	if err != nil {
		t.Fatal(err)
	}
	head := string(cfg[:strings.Index(string(cfg), "menuentry")])
	head = regexp.MustCompile(`(?m)^(serial|terminal_input|terminal_output) .*$`).ReplaceAllString(head, "")
	return strings.NewReplacer("${prefix}", "(hd0)/grub", "/pith/", "(hd0)/pith/").Replace(head)
}

// grubESP sets dir up for grubRun with head as its grub.cfg and returns
// the empty FAT ESP (with grub/ and pith/) that is its (hd0).
func grubESP(t *testing.T, dir, head string) string {
	t.Helper()
	esp := filepath.Join(dir, "esp.img")
	if err := os.MkdirAll(filepath.Join(dir, "prefix"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prefix", "grub.cfg"), []byte(head), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "device.map"), []byte("(hd0) "+esp+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "truncate", "-s", "16M", esp)
	run(t, "mkfs.vfat", esp)
	run(t, "mmd", "-i", esp, "::grub", "::pith")
	return esp
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}
