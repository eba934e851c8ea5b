package configdrive

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// makeDrive builds a filesystem image of typ with go-diskfs.
func makeDrive(t *testing.T, typ filesystem.Type, label string, files map[string]string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "drive.img")
	d, err := diskfs.Create(img, 8<<20, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	if typ == filesystem.TypeISO9660 {
		d.LogicalBlocksize = 2048
	}
	fsys, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 0, FSType: typ, VolumeLabel: label, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := fsys.Mkdir("/" + filepath.Dir(name)); err != nil {
			t.Fatal(err)
		}
		f, err := fsys.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if iso, ok := fsys.(*iso9660.FileSystem); ok {
		if err := iso.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: label}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return img
}

// mtoolsDrive makes a FAT12 drive as operators do (mkfs.vfat, mcopy).
func mtoolsDrive(t *testing.T, label, userData string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "drive.img")
	src := filepath.Join(t.TempDir(), "openstack")
	if err := os.MkdirAll(filepath.Join(src, "latest"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "latest", "user_data"), []byte(userData), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"truncate", "-s", "4M", img}, {"mkfs.vfat", "-n", label, img}, {"mcopy", "-s", "-i", img, src, "::/"}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	return img
}

func TestReadAndProbe(t *testing.T) {
	both := map[string]string{UserData: "#cloud-config\nhostname: cd\n", MetaData: `{"uuid":"x"}`}
	blank := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(blank, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		img       string
		probe     bool
		ud, md    string
		err       error
		errSubstr string
	}{
		{name: "iso9660", img: makeDrive(t, filesystem.TypeISO9660, "config-2", both), probe: true, ud: both[UserData], md: both[MetaData]},
		{name: "fat32", img: makeDrive(t, filesystem.TypeFat32, "config-2", both), probe: true, ud: both[UserData], md: both[MetaData]},
		{name: "fat12 by mkfs.vfat, label in capitals", img: mtoolsDrive(t, "CONFIG-2", "{}"), probe: true, ud: "{}"},
		{name: "metadata only", img: makeDrive(t, filesystem.TypeISO9660, "config-2", map[string]string{MetaData: "{}"}), probe: true, md: "{}"},
		{name: "another label", img: makeDrive(t, filesystem.TypeISO9660, "cidata", both), probe: true, err: ErrNotFound},
		{name: "no filesystem", img: blank, err: ErrNotFound},
		{name: "no such device", img: "/nonexistent/sr9", err: ErrNotFound},
		{name: "user_data over the limit", img: makeDrive(t, filesystem.TypeFat32, "config-2", map[string]string{UserData: strings.Repeat("x", 2<<20)}), probe: true, errSubstr: "openstack/latest/user_data is larger than 1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Probe(tc.img); got != tc.probe {
				t.Errorf("Probe = %v, want %v", got, tc.probe)
			}
			d, err := Read(tc.img, 1<<20)
			switch {
			case tc.err != nil || tc.errSubstr != "":
				if tc.err != nil && !errors.Is(err, tc.err) || tc.errSubstr != "" && (err == nil || !strings.Contains(err.Error(), tc.errSubstr)) {
					t.Fatalf("err = %v, want %v %q", err, tc.err, tc.errSubstr)
				}
			case err != nil:
				t.Fatal(err)
			case string(d.UserData) != tc.ud || string(d.MetaData) != tc.md || (tc.ud == "") != (d.UserData == nil):
				t.Fatalf("got %q %q, want %q %q", d.UserData, d.MetaData, tc.ud, tc.md)
			}
		})
	}
}

func TestParseMeta(t *testing.T) {
	for _, tc := range []struct{ in, host, err string }{
		{in: `{"uuid":"u","hostname":"h","public_keys":{"k":"ssh-ed25519 AAAA"}}`, host: "h"},
		{in: `{}`},
		{in: `{"uuid":`, err: "openstack/latest/meta_data.json is not valid JSON"},
		{in: `{"public_keys":["a"]}`, err: "is not valid JSON"},
	} {
		m, err := ParseMeta([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || m.Hostname != tc.host {
			t.Errorf("%s: %+v %v", tc.in, m, err)
		}
	}
}
