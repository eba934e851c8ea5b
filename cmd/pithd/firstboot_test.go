package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runFirstBootCmd runs `pithd firstboot` against a temp root holding the
// host's account files, with no systemd and no network beyond a closed
// loopback port.
func runFirstBootCmd(t *testing.T, root, userData string) (string, error) {
	t.Helper()
	ud := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(ud, []byte(userData), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rootCmd := newRootCmd()
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs([]string{"firstboot", "--root", root, "--from-file", ud, "--no-units", "--metadata-url", "http://127.0.0.1:1", "--config-drive", ""})
	err := rootCmd.Execute()
	return out.String(), err
}

func accountRoot(t *testing.T) string {
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
	return root
}

func TestFirstBootCommand(t *testing.T) {
	root := accountRoot(t)
	out, err := runFirstBootCmd(t, root, "#cloud-config\nhostname: fb1\nwrite_files:\n  - path: /etc/fb\n    content: ok\n")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "fb1\n" {
		t.Errorf("hostname file %q\n%s", b, out)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/pith/first-boot.done")); err != nil {
		t.Errorf("first boot not recorded: %v", err)
	}
	if !strings.Contains(out, "user-data from file") || !strings.Contains(out, "applied; first boot: true") {
		t.Errorf("output:\n%s", out)
	}
}

func TestFirstBootCommandInvalid(t *testing.T) {
	root := accountRoot(t)
	out, err := runFirstBootCmd(t, root, "#cloud-config\nhostname: fb1\nusers:\n  - name: Bad\n")
	if err == nil {
		t.Fatalf("invalid user-data accepted:\n%s", out)
	}
	if !strings.Contains(out, "/var/lib/pith/user-data:4:11: error: users[0].name: invalid user name") || !strings.Contains(out, "nothing applied") {
		t.Errorf("output lacks the report:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/hostname")); !os.IsNotExist(err) {
		t.Error("invalid user-data was partly applied")
	}
}

// The whole stage from a real config drive (mkfs.vfat + mcopy): the
// platform comes from the kernel line under the root, the addresses from
// meta_data.json, and both end up in what is applied and recorded.
func TestFirstBootFromConfigDrive(t *testing.T) {
	root := accountRoot(t)
	src := t.TempDir()
	latest := filepath.Join(src, "openstack", "latest")
	if err := os.MkdirAll(latest, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(latest, "user_data"), []byte("#cloud-config\nwrite_files:\n  - path: /etc/peer\n    content: http://$private_ipv4:2380\n"), 0o644)
	os.WriteFile(filepath.Join(latest, "meta_data.json"), []byte(`{"uuid": "u-1", "hostname": "cd1", "private_ipv4": "10.9.8.7"}`), 0o644)
	img := filepath.Join(t.TempDir(), "config-2.img")
	for _, args := range [][]string{
		{"truncate", "-s", "4M", img},
		{"mkfs.vfat", "-n", "config-2", img},
		{"mcopy", "-s", "-i", img, filepath.Join(src, "openstack"), "::/"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "proc", "cmdline"), []byte("console=ttyS0 pith.platform=openstack\n"), 0o644)

	var out bytes.Buffer
	rootCmd := newRootCmd()
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs([]string{"firstboot", "--root", root, "--from-file", "", "--no-units", "--metadata-url", "http://127.0.0.1:1", "--config-drive", img})
	if err := rootCmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/peer")); string(b) != "http://10.9.8.7:2380" {
		t.Errorf("/etc/peer = %q\n%s", b, out.String())
	}
	md, _ := os.ReadFile(filepath.Join(root, "var/lib/pith/metadata.json"))
	if !strings.Contains(string(md), `"instance_id": "u-1"`) || !strings.Contains(string(md), `"private_ipv4": "10.9.8.7"`) {
		t.Errorf("metadata.json = %s", md)
	}
	if !strings.Contains(out.String(), "user-data from config-drive") {
		t.Errorf("output:\n%s", out.String())
	}
}
