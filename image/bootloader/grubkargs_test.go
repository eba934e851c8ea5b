package bootloader

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/slot"
	"github.com/pith-os/pith/node"
)

// TestGrubKargs runs grub.cfg's top in both GRUBs (grub-emu) against a FAT ESP:
// pith_kargs, and only it, comes from grub/kargs, split into arguments; a
// Secure Boot image takes the file only when every argument in it is on
// the allowlist, which GRUB's regexp must read as Go's does.
func TestGrubKargs(t *testing.T) {
	// What an attacker without Secure Boot could as well put in grub.cfg;
	// still, nothing but pith_kargs may come from this file (GRUB itself
	// sets check_signatures=no without Secure Boot).
	evil := map[string]string{"pith_usrhash": strings.Repeat("ee", 32), "default": "b", "check_signatures": "tampered"}
	emus := grubEmus(t)
	type kargsCase struct {
		name       string
		secureBoot bool
		kargs      string // "-": no file
		want       string
	}
	cases := []kargsCase{
		{"two arguments", false, "e2e_karg=1 nosmt", "RESULT n=2 hash= default=a sig=no refused= kargs=e2e_karg=1 nosmt"},
		{"empty", false, "", "RESULT n=0 hash= default=a sig=no refused= kargs="},
		{"no file", false, "-", "RESULT n=0 hash= default=a sig=no refused= kargs="},
		{"secure boot, allowed", true, "console=ttyS1,115200 nosmt", "RESULT n=2 hash= default=a sig=no refused= kargs=console=ttyS1,115200 nosmt"},
		{"secure boot, one refused", true, "quiet init=/bin/sh nosmt", "RESULT n=0 hash= default=a sig=no refused=init=/bin/sh kargs="},
		{"secure boot, empty", true, "", "RESULT n=0 hash= default=a sig=no refused= kargs="},
		{"secure boot, no file", true, "-", "RESULT n=0 hash= default=a sig=no refused= kargs="},
	}
	// One argument at a time, GRUB must decide as node.SecureBootKargAllowed.
	// (grub-emu's terminal wraps at 80 columns: the RESULT line is kept short.)
	for _, arg := range []string{"console=hvc0", "loglevel=7", "loglevel=8", "quiet", "quietx", "xquiet",
		"isolcpus=domain,2-3", "default_hugepagesz=1G", "hugepagesz=1T", "net.ifnames=0", "netXifnames=0",
		"mitigations=off", "e2e_karg=1", "pith.verity=off", "module.sig_enforce=0", "console=ttyS0\"", "--"} {
		want := "RESULT n=0 hash= default=a sig=no refused=" + arg + " kargs="
		if node.SecureBootKargAllowed(arg) {
			want = "RESULT n=1 hash= default=a sig=no refused= kargs=" + arg
		}
		cases = append(cases, kargsCase{"secure boot, " + arg, true, arg, want})
	}
	for _, tc := range cases {
		for _, emu := range emus {
			t.Run(emu.name+"/"+tc.name, func(t *testing.T) {
				p := params
				p.SecureBoot = tc.secureBoot
				// $# counts the words the linux line gets from ${pith_kargs}.
				head := grubCfgHead(t, p) + "function nargs {\n  echo \"RESULT n=$# hash=${pith_usrhash} default=${default} sig=${check_signatures} refused=${pith_karg_refused} kargs=${pith_kargs}\"\n}\nnargs ${pith_kargs}\nreboot\n"
				dir := t.TempDir()
				esp := grubESP(t, dir, head)
				env := filepath.Join(dir, "grubenv")
				if err := slot.WriteEnvFile(env, slot.InitialEnv()); err != nil {
					t.Fatal(err)
				}
				run(t, "mcopy", "-i", esp, env, "::grub/")
				if tc.kargs != "-" {
					e := slot.NewEnv()
					for k, v := range evil {
						e.Set(k, v)
					}
					e.Set(KargsVar, tc.kargs)
					b, err := e.Encode()
					if err != nil {
						t.Fatal(err)
					}
					f := filepath.Join(dir, KargsFile)
					if err := os.WriteFile(f, b, 0o644); err != nil {
						t.Fatal(err)
					}
					run(t, "mcopy", "-i", esp, f, "::grub/")
				}
				if got := grubRun(t, emu, dir); got != tc.want {
					t.Errorf("GRUB printed %q, want %q", got, tc.want)
				}
			})
		}
	}
}
