package datasource

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOEMDevice(t *testing.T) {
	for _, tc := range []struct{ cmdline, want string }{
		{"console=ttyS0 pith.oem=PARTUUID=3C0CE2FB-06B8-5893-90B9-15D463EB1F03 pith.platform=qemu", "/dev/disk/by-partuuid/3c0ce2fb-06b8-5893-90b9-15d463eb1f03"},
		{"pith.oem=PARTLABEL=OEM", "/dev/disk/by-partlabel/OEM"},
		{"pith.oem=LABEL=OEM", "/dev/disk/by-label/OEM"},
		{"pith.oem=UUID=44E1CB14-4F8E-5481-A2D5-9CF16C81E972", "/dev/disk/by-uuid/44e1cb14-4f8e-5481-a2d5-9cf16c81e972"},
		{"pith.oem=/dev/vda6", "/dev/vda6"},
		{"pith.oem=PARTUUID=a pith.oem=PARTUUID=b", "/dev/disk/by-partuuid/b"},
		{"pith.oem=PARTUUID=../../x", ""},
		{"pith.oem=FOO=bar", ""},
		{"pith.oem=PARTUUID=", ""},
		{"pith.oem=vda6", ""},
		{"console=ttyS0", ""},
	} {
		if got := OEMDevice(tc.cmdline); got != tc.want {
			t.Errorf("OEMDevice(%q) = %q, want %q", tc.cmdline, got, tc.want)
		}
	}
}

func TestOEMFetch(t *testing.T) {
	root := t.TempDir()
	cmdline := "pith.oem=PARTUUID=3c0ce2fb-06b8-5893-90b9-15d463eb1f03"
	o := &OEM{Root: root, Cmdline: &cmdline}
	if _, err := o.Fetch(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no OEM dir: %v, want ErrNotFound", err)
	}
	dir := filepath.Join(root, OEMDir)
	os.MkdirAll(filepath.Join(dir, "pith"), 0o755)
	if _, err := o.Fetch(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OEM without cloud-config: %v, want ErrNotFound", err)
	}
	os.WriteFile(filepath.Join(dir, OEMCloudConfig), []byte("#cloud-config\nhostname: oem\n"), 0o644)
	os.WriteFile(filepath.Join(dir, OEMPlatform), []byte("vagrant\n"), 0o644)
	r, err := o.Fetch()
	if err != nil || r.Source != "oem" || string(r.UserData) != "#cloud-config\nhostname: oem\n" {
		t.Fatalf("Fetch = %+v, %v", r, err)
	}
	if got := OEMPlatformID(root); got != "vagrant" {
		t.Errorf("OEMPlatformID = %q", got)
	}
	os.WriteFile(filepath.Join(dir, OEMCloudConfig), make([]byte, 33<<20), 0o644)
	if _, err := o.Fetch(); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge OEM config: %v", err)
	}
}

func TestOEMIgnitionSource(t *testing.T) {
	root := t.TempDir()
	cmdline := "pith.oem=PARTUUID=3c0ce2fb-06b8-5893-90b9-15d463eb1f03"
	o := &OEMIgnitionSource{Root: root, Cmdline: &cmdline}
	dir := filepath.Join(root, OEMDir)
	for _, tc := range []struct {
		name  string
		files map[string]string // below OEMDir
		want  string            // user-data; "" = ErrNotFound
		err   string            // an error other than ErrNotFound
	}{
		{name: "no OEM"},
		{name: "OEM cloud-config only", files: map[string]string{OEMCloudConfig: "#cloud-config\n"}},
		{name: "config.ign", files: map[string]string{OEMIgnition: `{"ignition":{"version":"3.4.0"}}`}, want: `{"ignition":{"version":"3.4.0"}}`},
		{name: "config.ign too large", files: map[string]string{OEMIgnition: string(make([]byte, 33<<20))}, err: "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.RemoveAll(dir)
			for name, data := range tc.files {
				writeFile(t, filepath.Join(dir, name), data)
			}
			r, err := o.Fetch(context.Background())
			switch {
			case tc.err != "":
				if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Fetch: %v, want %q", err, tc.err)
				}
			case tc.want == "":
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Fetch = %+v, %v; want ErrNotFound", r, err)
				}
			case err != nil || string(r.UserData) != tc.want:
				t.Fatalf("Fetch = %+v, %v; want %q", r, err, tc.want)
			}
		})
	}
}

// sameDevice refuses a filesystem that is not on the named device: a
// temp dir against a block device node the test makes (loop device
// numbers; nothing is opened).
func TestSameDevice(t *testing.T) {
	if err := sameDevice(t.TempDir(), filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("a device link that does not exist is not checked: %v", err)
	}
	if err := sameDevice(t.TempDir(), "/dev/null"); err != nil {
		t.Errorf("a character device is not checked: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("making a block device node needs root")
	}
	dir := t.TempDir()
	node := filepath.Join(t.TempDir(), "oem-partition")
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	// A node with the device number of dir's filesystem matches...
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Dev)); err != nil {
		t.Fatal(err)
	}
	if err := sameDevice(dir, node); err != nil {
		t.Errorf("same device: %v", err)
	}
	// ...any other does not.
	other := filepath.Join(t.TempDir(), "other")
	if err := unix.Mknod(other, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 250))); err != nil {
		t.Fatal(err)
	}
	if err := sameDevice(dir, other); err == nil || !strings.Contains(err.Error(), "second Pith disk") {
		t.Errorf("mismatch: %v", err)
	}
}
