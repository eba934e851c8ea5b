package pithinit

import (
	"os"
	"path/filepath"
	"testing"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreateSkeleton(t *testing.T) {
	root := t.TempDir()
	usr := filepath.Join(root, "usr")
	writeTree(t, usr, map[string]string{
		"share/pith/etc/hostname":             "pith\n",
		"share/pith/etc/ssh/sshd_config":      "PermitRootLogin no\n",
		"share/pith/var/lib/pith/placeholder": "",
	})
	if err := os.Chmod(filepath.Join(usr, "share/pith/etc/ssh/sshd_config"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(usr, "share/pith/etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	if Initialized(root) {
		t.Fatal("fresh ROOT reported as initialized")
	}
	if err := CreateSkeleton(root, usr); err != nil {
		t.Fatal(err)
	}
	if !Initialized(root) {
		t.Error("no marker after CreateSkeleton")
	}
	for link, want := range map[string]string{"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64", "etc/resolv.conf": "../run/systemd/resolve/stub-resolv.conf"} {
		if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", link, got, err, want)
		}
	}
	modes := map[string]os.FileMode{
		"tmp": os.ModeDir | os.ModeSticky | 0o777, "root": os.ModeDir | 0o700, "home": os.ModeDir | 0o755,
		"proc": os.ModeDir | 0o555, "sys": os.ModeDir | 0o555, "dev": os.ModeDir | 0o755, "run": os.ModeDir | 0o755,
		"mnt": os.ModeDir | 0o755, "opt": os.ModeDir | 0o755, "srv": os.ModeDir | 0o755, "var": os.ModeDir | 0o755,
		"etc/ssh/sshd_config": 0o600, "etc/hostname": 0o644, "var/lib/pith/placeholder": 0o644,
	}
	for name, want := range modes {
		st, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if st.Mode() != want {
			t.Errorf("%s mode %v, want %v", name, st.Mode(), want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "machine-id")); err == nil {
		t.Error("machine-id must be left for systemd")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "pith\n" {
		t.Errorf("etc/hostname = %q", b)
	}
}

func TestCreateSkeletonKeepsExisting(t *testing.T) {
	root := t.TempDir()
	usr := filepath.Join(root, "usr")
	writeTree(t, usr, map[string]string{"share/pith/etc/hostname": "pith\n", "share/pith/etc/motd": "hi\n"})
	// A first boot cut short left a changed file behind: keep it, add the rest.
	writeTree(t, root, map[string]string{"etc/hostname": "mine\n"})
	if err := CreateSkeleton(root, usr); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "mine\n" {
		t.Errorf("etc/hostname = %q, want the existing content kept", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/motd")); string(b) != "hi\n" {
		t.Errorf("etc/motd = %q", b)
	}
	matches, _ := filepath.Glob(filepath.Join(root, "etc", "*.pith-tmp"))
	if len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}

func TestCreateSkeletonNeedsEtcDefaults(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := CreateSkeleton(root, filepath.Join(root, "usr"))
	if err == nil {
		t.Fatal("want an error for a USR without /usr/share/pith/etc")
	}
	if Initialized(root) {
		t.Error("marker written although the skeleton failed")
	}
}
