package rootfs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestDisableStockAppArmor(t *testing.T) {
	for _, tc := range []struct {
		name     string
		profiles []string // files in etc/apparmor.d
		disabled []string // want in etc/apparmor.d/disable
	}{
		{"stock and own profiles", []string{"lsb_release", "nvidia_modprobe", "usr.bin.mine"}, []string{"lsb_release", "nvidia_modprobe"}},
		{"one stock profile", []string{"lsb_release"}, []string{"lsb_release"}},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			etc := t.TempDir()
			dir := filepath.Join(etc, "apparmor.d")
			for _, p := range tc.profiles {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, p), []byte("profile x {}\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// Twice: a rebuild over the same tree is no error.
			for range 2 {
				if err := disableStockAppArmor(etc); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			ents, _ := os.ReadDir(filepath.Join(dir, "disable"))
			for _, e := range ents {
				got = append(got, e.Name())
				if l, err := os.Readlink(filepath.Join(dir, "disable", e.Name())); err != nil || l != "/etc/apparmor.d/"+e.Name() {
					t.Errorf("disable/%s links to %q (%v)", e.Name(), l, err)
				}
			}
			if !slices.Equal(got, tc.disabled) {
				t.Errorf("disabled %v, want %v", got, tc.disabled)
			}
		})
	}
}
