package storage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
)

// rootEnv is fakeEnv with ROOT's partition (/dev/vda4) known and every
// device's disk as the init would find it: ROOT and its volume on the
// boot disk vda, the rest elsewhere.
func rootEnv(root string, r Runner) Env {
	env := fakeEnv(root, r)
	env.RootDevice = "/dev/vda4"
	env.DisksOf = func(d string) ([]string, error) {
		if d == "/dev/vda4" || strings.HasPrefix(d, "/dev/mapper/root") {
			return []string{"vda"}, nil
		}
		return []string{filepath.Base(d)}, nil
	}
	return env
}

func rootPlan(key []byte) *Plan {
	return &Plan{
		Luks:        []Luks{{Name: "root", Device: cloudconfig.RootDevice, TPM2: true, Wipe: true, Root: true, Key: key}},
		Filesystems: []Filesystem{{Device: "/dev/mapper/root", Format: "ext4", Label: "ROOT", Wipe: true}},
	}
}

// An encrypted ROOT: the image's ext4 on ROOT's partition is wiped, LUKS2
// formatted with the subsystem later boots read, bound to the TPM and
// opened through it, ext4 labelled ROOT made on it, and the volume left
// open, with no crypttab line, key or unit; a keyFile given with the TPM
// stays enrolled (recovery) but is not kept.
func TestApplyRootLuks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		key    []byte
		pbkdf  string
		remove bool // the generated key is removed once the TPM opened it
	}{
		{"TPM only", nil, " --pbkdf pbkdf2 --pbkdf-force-iterations 1000", true},
		{"TPM and a recovery keyFile", []byte("recovery"), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			r := newFakeTools(root)
			r.blkid["/dev/vda4"] = "TYPE=ext4\nLABEL=ROOT\n"
			if err := Apply(rootPlan(tc.key), rootEnv(root, r)); err != nil {
				t.Fatal(err)
			}
			const key = "/run/pith-storage/root.key"
			want := []string{
				"modprobe -a dm_crypt xts",
				"modprobe -a -q algif_skcipher aesni_intel",
				"blkid -p -o export /dev/vda4",
				"wipefs -a /dev/vda4",
				"cryptsetup luksFormat --type luks2 --batch-mode --key-file " + key + tc.pbkdf + " --subsystem pith-root:root /dev/vda4",
				"systemd-cryptenroll --unlock-key-file=" + key + " --tpm2-device=auto --tpm2-pcrs=7 /dev/vda4",
				"cryptsetup luksOpen /dev/vda4 root --token-only --token-type systemd-tpm2 --persistent",
			}
			if tc.remove {
				want = append(want, "cryptsetup luksRemoveKey --batch-mode /dev/vda4 "+key)
			}
			want = append(want,
				"blkid -p -o export /dev/vda4",
				"blkid -p -o export /dev/mapper/root",
				"mkfs.ext4 -F -q -L ROOT /dev/mapper/root",
				"blkid -p -o export /dev/mapper/root",
			)
			if got := strings.Join(r.calls, "\n"); got != strings.Join(want, "\n") {
				t.Errorf("commands:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
			if r.keys[key] == "" || tc.key != nil && r.keys[key] != string(tc.key) {
				t.Errorf("luksFormat's key %q, want the keyFile %q or a generated one", r.keys[key], tc.key)
			}
			for _, p := range []string{key, KeyDir, Crypttab, UnitDir} {
				if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
					t.Errorf("%s exists (%v): ROOT's volume needs no key, crypttab line or unit", p, err)
				}
			}
		})
	}
}

// Only the volume on ROOT may be on the boot disk, and only where the
// init said ROOT is.
func TestApplyRootLuksRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		plan *Plan
		env  func(Env) Env
		err  string
	}{
		{"ROOT's partition unknown", rootPlan(nil), func(e Env) Env { e.RootDevice = ""; return e },
			"volume root: /dev/disk/by-partlabel/ROOT: the boot's ROOT partition is unknown"},
		{"a data volume on ROOT's partition", &Plan{Luks: []Luks{{Name: "d", Device: "/dev/vda4", TPM2: true, Wipe: true}}}, func(e Env) Env { return e },
			"volume d: /dev/vda4 is /dev/vda4, on the boot disk vda: refused"},
		{"a filesystem on another volume of the boot disk", &Plan{Filesystems: []Filesystem{{Device: "/dev/mapper/root", Format: "ext4"}}}, func(e Env) Env { return e },
			"/dev/mapper/root is /dev/mapper/root, on the boot disk vda: refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			r := newFakeTools(root)
			err := Apply(tc.plan, tc.env(rootEnv(root, r)))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Apply: %v, want %q", err, tc.err)
			}
			for _, c := range r.calls {
				if strings.HasPrefix(c, "cryptsetup") || strings.HasPrefix(c, "wipefs") || strings.HasPrefix(c, "mkfs") {
					t.Errorf("ran %q", c)
				}
			}
		})
	}
}

// Later boots open ROOT's volume through the TPM alone.
func TestOpenRoot(t *testing.T) {
	for _, tc := range []struct {
		name, fail, err string
		calls           []string
	}{
		{name: "opened", calls: []string{"modprobe -a dm_crypt xts", "cryptsetup luksOpen /dev/vda4 root --token-only --token-type systemd-tpm2"}},
		{name: "the TPM refuses", fail: "cryptsetup luksOpen", err: "cryptsetup luksOpen: exit status 1: it failed ... for this reason",
			calls: []string{"modprobe -a dm_crypt xts", "cryptsetup luksOpen /dev/vda4 root --token-only --token-type systemd-tpm2"}},
		{name: "no dm_crypt", fail: "modprobe", err: "modprobe dm_crypt xts: exit status 1", calls: []string{"modprobe -a dm_crypt xts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFakeTools(t.TempDir())
			if tc.fail != "" {
				r.fail[tc.fail] = true
			}
			err := OpenRoot(r, "/dev/vda4", "root")
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("OpenRoot: %v, want %q", err, tc.err)
			}
			if got := strings.Join(r.calls, "\n"); got != strings.Join(tc.calls, "\n") {
				t.Errorf("commands:\n%s\nwant:\n%s", got, strings.Join(tc.calls, "\n"))
			}
		})
	}
}
