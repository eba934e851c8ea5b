package bootloader

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/slot"
)

// TestGrubKargs runs grub.cfg's top in both GRUBs (grub-emu) against a FAT ESP:
// a plain image takes pith_kargs, and only it, from grub/kargs and splits
// it into arguments; a Secure Boot image ignores the file.
func TestGrubKargs(t *testing.T) {
	// What an attacker without Secure Boot could as well put in grub.cfg;
	// still, nothing but pith_kargs may come from this file (GRUB itself
	// sets check_signatures=no without Secure Boot).
	evil := map[string]string{"pith_usrhash": strings.Repeat("ee", 32), "default": "b", "check_signatures": "tampered"}
	emus := grubEmus(t)
	for _, tc := range []struct {
		name       string
		secureBoot bool
		kargs      string // "-": no file
		want       string
	}{
		{"two arguments", false, "e2e_karg=1 mitigations=auto,nosmt", "RESULT n=2 kargs=e2e_karg=1 mitigations=auto,nosmt hash= default=a sig=no"},
		{"empty", false, "", "RESULT n=0 kargs= hash= default=a sig=no"},
		{"no file", false, "-", "RESULT n=0 kargs= hash= default=a sig=no"},
		{"secure boot ignores the file", true, "e2e_karg=1", "RESULT n=0 kargs= hash= default=a sig=no"},
	} {
		for _, emu := range emus {
			t.Run(emu.name+"/"+tc.name, func(t *testing.T) {
				p := params
				p.SecureBoot = tc.secureBoot
				// $# counts the words the linux line gets from ${pith_kargs}.
				head := grubCfgHead(t, p) + "function nargs {\n  echo \"RESULT n=$# kargs=${pith_kargs} hash=${pith_usrhash} default=${default} sig=${check_signatures}\"\n}\nnargs ${pith_kargs}\nreboot\n"
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
