package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// runFirstBootNow runs `pithd firstboot` in-process with args.
func runFirstBootNow(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	rootCmd := newRootCmd()
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(append([]string{"firstboot"}, args...))
	err := rootCmd.Execute()
	return out.String(), err
}

// TestFirstBootNow: pithd firstboot --now (pithctl userdata apply) lists
// what it changed, then that nothing did; a rejected user-data fails with
// the report, changes nothing and keeps the last applied one's hostname.
func TestFirstBootNow(t *testing.T) {
	root := accountRoot(t)
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	os.WriteFile(filepath.Join(root, "proc", "cmdline"), []byte("console=ttyS0 pith.platform=qemu\n"), 0o644)
	ud := filepath.Join(t.TempDir(), "user-data")
	args := []string{"--now", "--root", root, "--from-file", ud, "--no-units", "--metadata-url", "http://127.0.0.1:1"}
	for _, step := range []struct {
		name, userData, want string // want: the whole output
		fails                bool
	}{
		{"first", "#cloud-config\nhostname: n1\nwrite_files:\n  - path: /etc/motd\n    content: hello\n", `user-data from file (79 bytes)
user-data (cloud-config) applied; first boot: true
changed (2):
  wrote /etc/hostname
  wrote /etc/motd
`, false},
		{"again", "#cloud-config\nhostname: n1\nwrite_files:\n  - path: /etc/motd\n    content: hello\n", `user-data from file (79 bytes)
user-data (cloud-config) applied; first boot: true
changed: nothing (the node already is as the user-data says)
`, false},
		{"rejected", "#cloud-config\nhostname: n2\nwrite_files:\n  - path: /etc/motd\n    permissions: 999\n", `user-data from file (81 bytes)
error: /var/lib/pith/user-data:5:18: error: write_files[0].permissions: invalid permissions "999": want an octal mode such as '0644' (quote it)
error: user-data from file rejected: 1 error(s), 0 warning(s); nothing applied (report in /var/lib/pith/user-data.report)
changed: nothing (the node already is as the user-data says)
`, true},
	} {
		t.Run(step.name, func(t *testing.T) {
			if err := os.WriteFile(ud, []byte(step.userData), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := runFirstBootNow(t, args...)
			if (err != nil) != step.fails {
				t.Fatalf("error %v, want failure %v\n%s", err, step.fails, out)
			}
			if step.fails && err.Error() != "user-data was not applied (see above; pithctl userdata shows the report)" {
				t.Errorf("error %q", err)
			}
			if out != step.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, step.want)
			}
			if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "n1\n" {
				t.Errorf("hostname %q, want the applied n1", b)
			}
		})
	}
}

// TestFirstBootNowRefuses: flags that do not go together, and a non-root
// --now on the running system, fail before anything is read.
func TestFirstBootNowRefuses(t *testing.T) {
	euid = func() int { return 1000 }
	t.Cleanup(func() { euid = os.Geteuid })
	root := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-restart", "--root", root}, "--no-restart goes with --now (a boot's run never touches pithd.service)"},
		{[]string{"--now", "--saved=false", "--root", root}, "--saved is for a boot's run: --now applies the user-data found now, in full"},
		{[]string{"--now", "--no-units"}, "pithd firstboot --now changes the system: run it as root (sudo)"},
	} {
		out, err := runFirstBootNow(t, tc.args...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v: error %v, want %q\n%s", tc.args, err, tc.want, out)
		}
		if _, err := os.Stat(filepath.Join(root, "var")); !os.IsNotExist(err) {
			t.Errorf("%v: wrote under the root: %v", tc.args, err)
		}
	}
}
