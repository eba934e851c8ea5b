package pithinit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestFsckVerdict(t *testing.T) {
	for _, tc := range []struct {
		code     int
		stop     bool
		contains string
	}{
		{0, false, "clean"},
		{1, false, "errors repaired"},
		{2, false, "errors repaired"},
		{3, false, "errors repaired"},
		{4, true, "cannot repair"},
		{5, true, "cannot repair"},
		{8, true, "could not be checked"},
		{12, true, "cannot repair"},
		{32, true, "could not be checked"},
		{128, true, "could not be checked"},
	} {
		msg, err := fsckVerdict("/dev/vda9", tc.code, "ROOT: 11/65536 files\n")
		var stop *StopError
		if got := errors.As(err, &stop); got != tc.stop {
			t.Errorf("exit %d: stop %v, want %v (%v)", tc.code, got, tc.stop, err)
			continue
		}
		text := msg
		if stop != nil {
			text = stop.Msg
			for _, want := range []string{"/dev/vda9", "boot stops here", "pith.debug", "e2fsck -f /dev/vda9", "11/65536"} {
				if !strings.Contains(text, want) {
					t.Errorf("exit %d: message lacks %q:\n%s", tc.code, want, text)
				}
			}
		}
		if !strings.Contains(text, tc.contains) {
			t.Errorf("exit %d: %q lacks %q", tc.code, text, tc.contains)
		}
	}
}

// checkRoot against the real e2fsck on real filesystems: a clean one, one
// whose last mount never ended (fixed by preen), and one that is not ext4
// at all (the boot stops).
func TestCheckRootRealE2fsck(t *testing.T) {
	fsck, err := exec.LookPath("e2fsck")
	if err != nil {
		t.Fatal("e2fsck not installed: run make deps (package e2fsprogs)")
	}
	mkfs := func(t *testing.T) string {
		img := filepath.Join(t.TempDir(), "root.img")
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "ROOT", img, "8M").CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v: %s", err, out)
		}
		return img
	}
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T) string
		stop    bool
		want    string
	}{
		{"clean", mkfs, false, "clean"},
		{"wrong free counts (fixed by preen)", func(t *testing.T) string {
			return debugfs(t, mkfs(t), "ssv state 0", "ssv free_blocks_count 1")
		}, false, "errors repaired"},
		{"root inode cleared (needs an operator)", func(t *testing.T) string {
			return debugfs(t, mkfs(t), "clri <2>", "ssv state 0")
		}, true, "cannot repair"},
		{"not a filesystem", func(t *testing.T) string {
			img := filepath.Join(t.TempDir(), "zeros.img")
			if err := os.WriteFile(img, make([]byte, 8<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			return img
		}, true, "could not be checked"},
		{"missing device", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") }, true, "could not be checked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := checkRoot(fsck, tc.prepare(t))
			var stop *StopError
			if errors.As(err, &stop) != tc.stop {
				t.Fatalf("stop %v, want %v: %q %v", err != nil, tc.stop, msg, err)
			}
			if stop != nil {
				msg = stop.Msg
			}
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("%q lacks %q", msg, tc.want)
			}
		})
	}
	if msg, err := checkRoot(filepath.Join(t.TempDir(), "no-e2fsck"), "/dev/null"); err != nil || !strings.Contains(msg, "unchecked") {
		t.Errorf("without e2fsck: %q %v", msg, err)
	}
}

func debugfs(t *testing.T, img string, cmds ...string) string {
	t.Helper()
	for _, c := range cmds {
		if out, err := exec.Command("debugfs", "-w", "-R", c, img).CombinedOutput(); err != nil {
			t.Fatalf("debugfs %s: %v: %s", c, err, out)
		}
	}
	return img
}
