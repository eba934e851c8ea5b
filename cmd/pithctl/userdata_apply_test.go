package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/internal/pithdtest"
)

// TestMain lets a test run this test binary as pithctl (PITHCTL_TEST_MAIN=1,
// set by runApply only): userdata apply execs pithd and so replaces its
// process, which a command run in-process cannot do.
func TestMain(m *testing.M) {
	if os.Getenv("PITHCTL_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runApply runs `pithctl userdata apply args...` as its own process, with
// the pithd built from this tree first on PATH (none is next to the test
// binary), and returns its stdout, stderr and exit status.
func runApply(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"userdata", "apply"}, args...)...)
	cmd.Env = append(os.Environ(), "PITHCTL_TEST_MAIN=1",
		"PATH="+filepath.Dir(pithdtest.Binary(t))+string(os.PathListSeparator)+os.Getenv("PATH"))
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), status
}

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

// pithctl userdata apply, end to end through pithd firstboot --now: it
// says what changed on stdout, then that nothing did; a rejected user-data
// fails with the report and pithd's exit status, and changes nothing.
// (cmd/pithd's TestFirstBootNow checks the output line by line.)
func TestUserdataApply(t *testing.T) {
	root := userdataRoot(t)
	ud := filepath.Join(t.TempDir(), "user-data")
	os.WriteFile(ud, []byte("#cloud-config\nhostname: n1\nwrite_files:\n  - path: /etc/motd\n    content: hello\n"), 0o644)
	args := []string{"--root", root, "--from-file", ud, "--no-units", "--metadata-url", "http://127.0.0.1:1"}
	out, errOut, status := runApply(t, args...)
	if status != 0 || errOut != "" {
		t.Fatalf("exit status %d\n%s\nstderr: %s", status, out, errOut)
	}
	for _, want := range []string{"user-data from file", "changed (2):\n  wrote /etc/hostname\n  wrote /etc/motd\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("first apply output lacks %q:\n%s", want, out)
		}
	}
	out, errOut, status = runApply(t, args...)
	if status != 0 || !strings.HasSuffix(out, "\nchanged: nothing (the node already is as the user-data says)\n") {
		t.Errorf("second apply: exit status %d\n%s\nstderr: %s", status, out, errOut)
	}
	if out, err := runCtl(t, "userdata", "--root", root); err != nil || !strings.Contains(out, "status:     applied") || !strings.Contains(out, "source:     file") {
		t.Errorf("pithctl userdata after apply: %v\n%s", err, out)
	}

	os.WriteFile(ud, []byte("#cloud-config\nhostname: n2\nwrite_files:\n  - path: /etc/motd\n    permissions: 999\n"), 0o644)
	out, errOut, status = runApply(t, args...)
	if status != 1 || !strings.Contains(out, "error:") || !strings.Contains(out, "changed: nothing") ||
		errOut != "pithd: user-data was not applied (see above; pithctl userdata shows the report)\n" {
		t.Errorf("invalid user-data: exit status %d\n%s\nstderr: %s", status, out, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "n1\n" {
		t.Errorf("rejected user-data changed the hostname to %q", b)
	}
}

// What userdata apply refuses before it execs anything: a non-root run on
// the running system, and a node without pithd.
func TestUserdataApplyRefuses(t *testing.T) {
	euid = func() int { return 1000 }
	t.Cleanup(func() { euid = os.Geteuid })
	t.Setenv("PATH", t.TempDir())
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--root", "/"}, "pithctl userdata apply changes the system: run it as root (sudo)"},
		{[]string{"--root", t.TempDir()}, "pithctl userdata apply runs pithd firstboot --now on this node: pithd not found next to " + self + " or on PATH"},
	} {
		out, err := runCtl(t, append([]string{"userdata", "apply"}, tc.args...)...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v: error %v, want %q\n%s", tc.args, err, tc.want, out)
		}
	}
}

// pithctl status without units: the node's user-data record leads, and a
// rejected user-data makes it fail (issue 4: "pithctl status says so").
func TestNodeStatusShowsUserData(t *testing.T) {
	root := userdataRoot(t)
	ud := filepath.Join(t.TempDir(), "user-data")
	apply := []string{"--root", root, "--from-file", ud, "--no-units", "--metadata-url", "http://127.0.0.1:1"}
	for _, tc := range []struct {
		name, userData, want string
		fails                bool
	}{
		{"applied", "#cloud-config\nhostname: n1\n", "status:     applied", false},
		{"rejected", "#cloud-config\nhostname: [n2\n", "status:     REJECTED (invalid; nothing applied)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(ud, []byte(tc.userData), 0o644)
			if _, _, status := runApply(t, apply...); (status != 0) != tc.fails {
				t.Errorf("userdata apply: exit status %d, want failure %v", status, tc.fails)
			}
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
