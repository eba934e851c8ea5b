package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func userdataRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"passwd", "group", "shadow", "gshadow", "login.defs"} {
		b, err := os.ReadFile(filepath.Join("/etc", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc", f), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	os.WriteFile(filepath.Join(root, "proc", "cmdline"), []byte("console=ttyS0 pith.platform=qemu\n"), 0o644)
	return root
}

// pithctl userdata apply: says what changed, then that nothing did; a
// rejected user-data fails with the report and changes nothing.
func TestUserdataApply(t *testing.T) {
	root := userdataRoot(t)
	ud := filepath.Join(t.TempDir(), "user-data")
	os.WriteFile(ud, []byte("#cloud-config\nhostname: n1\nwrite_files:\n  - path: /etc/motd\n    content: hello\n"), 0o644)
	args := []string{"userdata", "apply", "--root", root, "--from-file", ud, "--no-units", "--metadata-url", "http://127.0.0.1:1"}
	out, err := runCtl(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"user-data from file", "changed (2):", "  wrote /etc/hostname", "  wrote /etc/motd"} {
		if !strings.Contains(out, want) {
			t.Errorf("first apply output lacks %q:\n%s", want, out)
		}
	}
	out, err = runCtl(t, args...)
	if err != nil || !strings.Contains(out, "changed: nothing") {
		t.Errorf("second apply: %v\n%s", err, out)
	}
	if out, err := runCtl(t, "userdata", "--root", root); err != nil || !strings.Contains(out, "status:     applied") || !strings.Contains(out, "source:     file") {
		t.Errorf("pithctl userdata after apply: %v\n%s", err, out)
	}

	os.WriteFile(ud, []byte("#cloud-config\nhostname: n2\nwrite_files:\n  - path: /etc/motd\n    permissions: 999\n"), 0o644)
	out, err = runCtl(t, args...)
	if err == nil || !strings.Contains(out, "error:") || !strings.Contains(out, "changed: nothing") {
		t.Errorf("invalid user-data: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "n1\n" {
		t.Errorf("rejected user-data changed the hostname to %q", b)
	}
}

// pithctl status without units: the node's user-data record leads, and a
// rejected user-data makes it fail (issue 4: "pithctl status says so").
func TestNodeStatusShowsUserData(t *testing.T) {
	root := userdataRoot(t)
	ud := filepath.Join(t.TempDir(), "user-data")
	apply := []string{"userdata", "apply", "--root", root, "--from-file", ud, "--no-units", "--metadata-url", "http://127.0.0.1:1"}
	for _, tc := range []struct {
		name, userData, want string
		fails                bool
	}{
		{"applied", "#cloud-config\nhostname: n1\n", "status:     applied", false},
		{"rejected", "#cloud-config\nhostname: [n2\n", "status:     REJECTED (invalid; nothing applied)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(ud, []byte(tc.userData), 0o644)
			runCtl(t, apply...) // the rejected one fails; its record is what counts
			out, err := runCtl(t, "status", "--root", root)
			if (err != nil) != tc.fails {
				t.Errorf("pithctl status: error %v, want failure %v\n%s", err, tc.fails, out)
			}
			for _, want := range []string{"== User-data (pithctl userdata) ==", tc.want, "== Boot slots", "== Updates"} {
				if !strings.Contains(out, want) {
					t.Errorf("pithctl status lacks %q:\n%s", want, out)
				}
			}
		})
	}
}
