package pithinit

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// luksBytes is a LUKS header of the given version with a LUKS2 subsystem.
func luksBytes(version uint16, subsystem string) []byte {
	b := make([]byte, 4096)
	copy(b, luksMagic)
	binary.BigEndian.PutUint16(b[6:], version)
	copy(b[24:], "luks-root")
	copy(b[168:], "0b5e2d3c-1f1e-4a5b-9c8d-7e6f5a4b3c2d")
	copy(b[208:], subsystem)
	return b
}

// The init reads ROOT's volume name from its LUKS2 header and refuses a
// LUKS volume Pith did not make.
func TestRootVolumeName(t *testing.T) {
	ext4 := make([]byte, 4096)
	binary.LittleEndian.PutUint16(ext4[1080:], 0xEF53)
	for _, tc := range []struct {
		name   string
		b      []byte
		isLuks bool
		vol    string
		err    string
	}{
		{name: "ext4", b: ext4},
		{name: "short read", b: luksBytes(2, "pith-root:root")[:100]},
		{name: "Pith's", b: luksBytes(2, "pith-root:root"), isLuks: true, vol: "root"},
		{name: "another name", b: luksBytes(2, "pith-root:crypt_root-1.x"), isLuks: true, vol: "crypt_root-1.x"},
		{name: "no subsystem", b: luksBytes(2, ""), isLuks: true, err: `its LUKS2 subsystem is "", not pith-root:<name>: not a volume Pith made`},
		{name: "another subsystem", b: luksBytes(2, "crypto:root"), isLuks: true, err: `subsystem is "crypto:root"`},
		{name: "a name that is a path", b: luksBytes(2, "pith-root:../sda"), isLuks: true, err: `subsystem is "pith-root:../sda"`},
		{name: "an empty name", b: luksBytes(2, "pith-root:"), isLuks: true, err: "not a volume Pith made"},
		{name: "LUKS1", b: luksBytes(1, "pith-root:root"), isLuks: true, err: "it is LUKS1, not a LUKS2 volume Pith made"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ok := parseLuksHeader(tc.b)
			if ok != tc.isLuks {
				t.Fatalf("parseLuksHeader: LUKS %v, want %v", ok, tc.isLuks)
			}
			if !ok {
				return
			}
			vol, err := rootVolumeName(h)
			if vol != tc.vol || tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("rootVolumeName = %q, %v; want %q, %q", vol, err, tc.vol, tc.err)
			}
		})
	}
}

// encryptedRoot on real headers, as cryptsetup writes them: an encrypted
// ROOT is checked and mounted as /dev/mapper/<name>, a plain one as
// itself, another LUKS volume stops the boot.
func TestEncryptedRoot(t *testing.T) {
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf // CI has cryptsetup: this must run there
	}
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		skip("cryptsetup is not installed")
	}
	dir := t.TempDir()
	format := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, 20<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		key := filepath.Join(dir, "key")
		if err := os.WriteFile(key, []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"luksFormat", "--type", "luks2", "--batch-mode", "--key-file", key, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}, args...)
		if out, err := exec.Command("cryptsetup", append(args, p)...).CombinedOutput(); err != nil {
			t.Fatalf("cryptsetup %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return p
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dev, want, vol string
		stop                 string
	}{
		{name: "not LUKS", dev: plain, want: plain},
		{name: "Pith's", dev: format("pith", "--subsystem", "pith-root:root", "--label", "luks-root"), want: "/dev/mapper/root", vol: "root"},
		{name: "not Pith's", dev: format("other", "--label", "luks-root"), stop: `is encrypted, but its LUKS2 subsystem is "", not pith-root:<name>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := &Device{Path: tc.dev}
			fs, vol, err := encryptedRoot(root)
			var stop *StopError
			if tc.stop != "" {
				if !errors.As(err, &stop) || !strings.Contains(err.Error(), tc.stop) {
					t.Fatalf("encryptedRoot: %v, want a StopError with %q", err, tc.stop)
				}
				return
			}
			if err != nil || fs.Path != tc.want || vol != tc.vol {
				t.Fatalf("encryptedRoot = %v, %q, %v; want %s, %q", fs, vol, err, tc.want, tc.vol)
			}
			if tc.vol == "" && fs != root {
				t.Error("a plain ROOT is not returned as itself")
			}
		})
	}
	if _, _, err := encryptedRoot(&Device{Path: filepath.Join(dir, "absent")}); err == nil {
		t.Error("an unreadable ROOT is no error")
	}
}

// ROOT's files carried over: modes, owners, symlinks and empty
// directories kept, what the target has already (mkfs's lost+found) left
// alone, no temporary names left.
func TestCopyNamed(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeTree(t, src, map[string]string{
		"etc/hostname":                          "pith\n",
		"var/lib/pith/root-initialized":         "yes\n",
		"var/lib/pith/ignition-storage.started": "",
	})
	for _, d := range []struct {
		p    string
		mode os.FileMode
	}{{"lost+found", 0o700}, {"root", 0o700}, {"tmp", os.ModeSticky | 0o777}, {"proc", 0o555}} {
		if err := os.Mkdir(filepath.Join(src, d.p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(src, d.p), d.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/lib", filepath.Join(src, "lib")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "etc/hostname"), 0o640); err != nil {
		t.Fatal(err)
	}
	writeTree(t, dst, map[string]string{"lost+found/mkfs": ""})
	for _, durable := range []bool{false, true} {
		if err := copyNamed(src, dst, durable); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dst, "etc/hostname")); err != nil || string(b) != "pith\n" {
		t.Errorf("etc/hostname: %q, %v", b, err)
	}
	for p, want := range map[string]os.FileMode{"etc/hostname": 0o640, "root": os.ModeDir | 0o700, "tmp": os.ModeDir | os.ModeSticky | 0o777, "proc": os.ModeDir | 0o555} {
		if fi, err := os.Stat(filepath.Join(dst, p)); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v %v, want %v", p, fi.Mode(), err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, "lib")); err != nil || l != "usr/lib" {
		t.Errorf("lib -> %q, %v", l, err)
	}
	if !exists(filepath.Join(dst, "lost+found/mkfs")) || !exists(filepath.Join(dst, MarkerPath)) {
		t.Error("lost+found's file or the skeleton's marker is missing")
	}
	filepath.Walk(dst, func(p string, _ os.FileInfo, _ error) error {
		if strings.HasSuffix(p, copyTemp) {
			t.Errorf("%s left under its temporary name", p)
		}
		return nil
	})
}
