package pithinit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/node"
)

// The block is what GRUB's load_env reads: checked against GRUB's own
// grub-editenv where it is installed.
func TestKargsBlock(t *testing.T) {
	b, err := kargsBlock([]string{"e2e_karg=1", "mitigations=auto,nosmt"})
	if err != nil {
		t.Fatal(err)
	}
	want := "# GRUB Environment Block\npith_kargs=e2e_karg=1 mitigations=auto,nosmt\n"
	if len(b) != 1024 || !strings.HasPrefix(string(b), want) || strings.Trim(string(b[len(want):]), "#") != "" {
		t.Fatalf("block %q", b)
	}
	if args, err := parseKargsBlock(b); err != nil || !slices.Equal(args, []string{"e2e_karg=1", "mitigations=auto,nosmt"}) {
		t.Errorf("parse = %q, %v", args, err)
	}
	if _, err := exec.LookPath("grub-editenv"); err == nil {
		f := filepath.Join(t.TempDir(), "kargs")
		os.WriteFile(f, b, 0o644)
		out, err := exec.Command("grub-editenv", f, "list").CombinedOutput()
		if err != nil || string(out) != "pith_kargs=e2e_karg=1 mitigations=auto,nosmt\n" {
			t.Errorf("grub-editenv list: %q, %v", out, err)
		}
	}
	if b, err := kargsBlock(nil); err != nil || !strings.HasPrefix(string(b), "# GRUB Environment Block\npith_kargs=\n#") {
		t.Errorf("no arguments: %q, %v", b, err)
	}
	if _, err := kargsBlock([]string{strings.Repeat("x", cloudconfig.KargsMaxLen+1)}); err == nil {
		t.Error("an oversized block accepted")
	}
	if _, err := parseKargsBlock([]byte("pith_kargs=a\n")); err == nil {
		t.Error("a file without the header accepted")
	}
}

// imageLine stands for the kernel line grub.cfg gives every boot.
const imageLine = "console=tty0 console=ttyS0,115200n8 panic=10 pith.slot=a quiet"

// kargsMachine is one machine's ESP and ROOT across boots; grubReads
// says whether its boot loader appends the ESP's file (a grub.cfg from
// before kernelArguments does not).
type kargsMachine struct {
	esp, root string
	grubReads bool
	mounts    int
}

func newKargsMachine(t *testing.T, grubReads bool, esp map[string]string) *kargsMachine {
	m := &kargsMachine{esp: t.TempDir(), root: t.TempDir(), grubReads: grubReads}
	writeTree(t, m.esp, esp)
	return m
}

// fileArgs are the ESP file's arguments; none for a file GRUB could not
// load (missing, damaged).
func (m *kargsMachine) fileArgs(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join(m.esp, node.KargsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	args, _ := parseKargsBlock(b)
	return args
}

// boot runs the stage as one boot would; it returns the console lines
// and whether the stage rebooted.
func (m *kargsMachine) boot(t *testing.T, cfg *cloudconfig.IgnitionConfig) ([]string, bool, error) {
	line := imageLine
	if m.grubReads && len(m.fileArgs(t)) > 0 {
		line += " " + strings.Join(m.fileArgs(t), " ")
	}
	var log []string
	reboot, err := applyKargs(cfg, kargsEnv{
		Root: m.root, Cmdline: line,
		ESP: func() (string, func() error, error) {
			m.mounts++
			return m.esp, func() error { return nil }, nil
		},
		Log: func(f string, a ...any) { log = append(log, fmt.Sprintf(f, a...)) },
	})
	return log, reboot, err
}

func TestApplyKargs(t *testing.T) {
	type boot struct {
		log    string // the one console line, "" for none
		reboot bool
		stop   string // in the StopError, "" for none
	}
	secureBoot := map[string]string{ESPBootPub: "key"}
	fileWith := func(args ...string) map[string]string {
		b, err := kargsBlock(args)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{node.KargsFile: string(b)}
	}
	for _, tc := range []struct {
		name      string
		cfg       string // kernelArguments
		esp       map[string]string
		grubReads bool
		boots     []boot
		file      []string // the ESP's arguments at the end
	}{
		{"none asked", `{}`, nil, true, []boot{{"", false, ""}}, nil},
		{"append, reboot once, then in effect", `{"shouldExist":["e2e_karg=1","nosmt"]}`, nil, true, []boot{
			{"ignition: kernel arguments changed (+e2e_karg=1 +nosmt): rebooting once", true, ""},
			{"ignition: kernel arguments already in effect", false, ""}}, []string{"e2e_karg=1", "nosmt"}},
		{"already on the image's line", `{"shouldExist":["quiet"],"shouldNotExist":["nosmt"]}`, nil, true, []boot{
			{"ignition: kernel arguments already in effect", false, ""}}, nil},
		{"remove the machine's own", `{"shouldExist":["b"],"shouldNotExist":["c"]}`, fileWith("a", "c"), true, []boot{
			{"ignition: kernel arguments changed (+b -c): rebooting once", true, ""},
			{"ignition: kernel arguments already in effect", false, ""}}, []string{"a", "b"}},
		{"the image's own cannot go", `{"shouldNotExist":["quiet"]}`, nil, true, []boot{
			{"", false, "shouldNotExist quiet: on the image's own kernel line (grub.cfg)"}}, nil},
		{"boot loader ignores the file: one reboot, then stop", `{"shouldExist":["e2e_karg=1"]}`, nil, false, []boot{
			{"ignition: kernel arguments changed (+e2e_karg=1): rebooting once", true, ""},
			{"", false, "this machine rebooted once already to apply them (var/lib/pith/ignition-kargs.rebooted), and this boot's kernel line still lacks +e2e_karg=1"},
			{"", false, "not rebooting again"}}, []string{"e2e_karg=1"}},
		{"file already asks, without the marker", `{"shouldExist":["e2e_karg=1"]}`, fileWith("e2e_karg=1"), false, []boot{
			{"", false, "grub/kargs on the ESP already asks for +e2e_karg=1 but this boot's kernel line does not have it"}}, []string{"e2e_karg=1"}},
		{"secure boot, one not on the allowlist", `{"shouldExist":["nosmt","e2e_karg=1","mitigations=off"]}`, secureBoot, true, []boot{
			{"", false, `this image's boot chain is signed for Secure Boot (pith/boot.pub on the ESP), and its signed grub.cfg takes the machine's arguments from the unsigned grub/kargs only when each is on its allowlist (cloudconfig/README, "kernelArguments"); not on it: e2e_karg=1 mitigations=off. Nothing was written`}}, nil},
		{"secure boot, on the allowlist", `{"shouldExist":["nosmt","console=ttyS1,115200n8"]}`, secureBoot, true, []boot{
			{"ignition: kernel arguments changed (+nosmt +console=ttyS1,115200n8): rebooting once", true, ""},
			{"ignition: kernel arguments already in effect", false, ""}}, []string{"nosmt", "console=ttyS1,115200n8"}},
		{"secure boot, nothing to do", `{"shouldExist":["quiet"]}`, secureBoot, true, []boot{
			{"ignition: kernel arguments already in effect", false, ""}}, nil},
		{"a damaged file", `{"shouldExist":["e2e_karg=1"]}`, map[string]string{node.KargsFile: "garbage"}, true, []boot{
			{"", false, "grub/kargs on the ESP: not a GRUB environment block"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, rep := cloudconfig.ParseIgnition([]byte(`{"ignition":{"version":"3.4.0"},"kernelArguments":` + tc.cfg + `}`))
			if cfg == nil || rep.HasErrors() {
				t.Fatal(rep.Format("x"))
			}
			m := newKargsMachine(t, tc.grubReads, tc.esp)
			for i, b := range tc.boots {
				log, reboot, err := m.boot(t, cfg)
				var stop *StopError
				switch {
				case b.stop == "" && err != nil:
					t.Fatalf("boot %d: %v", i+1, err)
				case b.stop != "" && (!errors.As(err, &stop) || !strings.Contains(err.Error(), b.stop) || strings.Contains(err.Error(), "\n")):
					t.Fatalf("boot %d: %v, want a one-line stop containing %q", i+1, err, b.stop)
				case b.stop != "" && !strings.HasPrefix(err.Error(), "ignition: kernelArguments not applied, the first boot stops here as Ignition does: "):
					t.Errorf("boot %d: %v", i+1, err)
				}
				if reboot != b.reboot || strings.Join(log, "\n") != b.log {
					t.Errorf("boot %d: reboot %v, log %q; want %v, %q", i+1, reboot, log, b.reboot, b.log)
				}
				if got := exists(filepath.Join(m.root, node.KargsRebootMarker)); reboot && !got {
					t.Errorf("boot %d rebooted without the marker", i+1)
				}
			}
			if got := m.fileArgs(t); !slices.Equal(got, tc.file) {
				t.Errorf("the ESP's arguments: %q, want %q", got, tc.file)
			}
			// The ESP is mounted only when the line is not what is asked.
			if tc.boots[0].log == "ignition: kernel arguments already in effect" && m.mounts > 0 {
				t.Errorf("the ESP was mounted %d times with nothing to change", m.mounts)
			}
		})
	}
}

// The ESP is the one on USR's disk, found by its GPT name.
func TestESPOf(t *testing.T) {
	if ESPLabel != layout.LabelESP {
		t.Fatalf("ESPLabel %q, the image's ESP is %q", ESPLabel, layout.LabelESP)
	}
	disk := makeDisk(t, "64M")
	fakeSys(t, disk, 1, 3, 9)
	usr, err := FindDevice(Spec{Kind: "PARTUUID", Value: testUsrUUID})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := espOf(usr); err != nil || got != filepath.Join(DevDir, "vda1") {
		t.Errorf("espOf = %s, %v; want vda1", got, err)
	}
	if _, err := espOf(&Device{Path: "/dev/mapper/x"}); err == nil {
		t.Error("an ESP found beside a device that is on no disk")
	}
}
