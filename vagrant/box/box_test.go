package box

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/image/manifest"
)

func TestNewMetadata(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want int64
	}{
		{1, 1},
		{GiB - 1, 1},
		{GiB, 1},
		{GiB + 1, 2},
		{4 * GiB, 4},
		{4*GiB + 512, 5},
		{100 * GiB, 100},
	} {
		m := NewMetadata(tc.size)
		if m.VirtualSize != tc.want || m.Provider != "libvirt" || m.Format != "qcow2" {
			t.Errorf("NewMetadata(%d) = %+v, want virtual_size %d, libvirt, qcow2", tc.size, m, tc.want)
		}
	}
	b, _ := json.Marshal(NewMetadata(4 * GiB))
	if string(b) != `{"provider":"libvirt","format":"qcow2","virtual_size":4}` {
		t.Errorf("metadata.json = %s", b)
	}
}

// qcow2Header writes a minimal qcow2 header for size bytes.
func qcow2Header(t *testing.T, dir string, version uint32, size uint64) string {
	t.Helper()
	h := make([]byte, 104)
	copy(h, qcowMagic)
	binary.BigEndian.PutUint32(h[4:], version)
	binary.BigEndian.PutUint32(h[20:], 16)
	binary.BigEndian.PutUint64(h[24:], size)
	p := filepath.Join(dir, "img.qcow2")
	if err := os.WriteFile(p, h, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestQcowVirtualSize(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		write   func() string
		want    int64
		wantErr string
	}{
		{"v3 4GiB", func() string { return qcow2Header(t, dir, 3, 4<<30) }, 4 << 30, ""},
		{"v2 odd size", func() string { return qcow2Header(t, dir, 2, 5<<30+4096) }, 5<<30 + 4096, ""},
		{"v1", func() string { return qcow2Header(t, dir, 1, 1<<30) }, 0, "version 1"},
		{"zero size", func() string { return qcow2Header(t, dir, 3, 0) }, 0, "virtual size"},
		{"raw", func() string {
			p := filepath.Join(dir, "raw.img")
			os.WriteFile(p, make([]byte, 4096), 0o644)
			return p
		}, 0, "not a qcow2 file"},
		{"short", func() string {
			p := filepath.Join(dir, "short")
			os.WriteFile(p, []byte("QFI"), 0o644)
			return p
		}, 0, "not a qcow2 file"},
		{"missing", func() string { return filepath.Join(dir, "nope.qcow2") }, 0, "pith build"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := QcowVirtualSize(tc.write())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestQcowVirtualSizeQemuImg checks the header reading against a real
// qcow2 made by qemu-img.
func TestQcowVirtualSizeQemuImg(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (make deps installs qemu-utils)")
	}
	p := filepath.Join(t.TempDir(), "d.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", p, "3G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	got, err := QcowVirtualSize(p)
	if err != nil || got != 3<<30 {
		t.Fatalf("= %d, %v; want %d", got, err, 3<<30)
	}
}

func TestCheckVersion(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"0.1.0", true}, {"1", true}, {"2026.11.25", true}, {"1.2.3.4", true},
		{"", false}, {"v1.0", false}, {"1.0-rc1", false}, {"44e5d1f-dirty", false}, {"1..2", false}, {"1.", false},
	} {
		if err := CheckVersion(tc.v); (err == nil) != tc.ok {
			t.Errorf("CheckVersion(%q) = %v, want ok=%v", tc.v, err, tc.ok)
		}
	}
}

type tarFile struct {
	hdr  *tar.Header
	data []byte
}

func readBox(t *testing.T, p string) []tarFile {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Header.Name != "" || !zr.Header.ModTime.IsZero() {
		t.Errorf("gzip header carries name %q / time %v", zr.Header.Name, zr.Header.ModTime)
	}
	tr := tar.NewReader(zr)
	var out []tarFile
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarFile{h, b})
	}
	return out
}

func writeImage(t *testing.T, dir string, m *manifest.Manifest) string {
	t.Helper()
	img := qcow2Header(t, dir, 3, 4<<30+1)
	// Content after the header, so box.img's bytes are checked, not only its size.
	f, _ := os.OpenFile(img, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(bytes.Repeat([]byte("pith"), 300000))
	f.Close()
	if m != nil {
		b, _ := m.Encode()
		if err := os.WriteFile(filepath.Join(dir, manifest.FileName), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func TestBuild(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	epoch := int64(1767225600)
	img := writeImage(t, dir, &manifest.Manifest{Schema: 1, Version: "1.2.3", Platform: "vagrant", Inputs: manifest.Inputs{SourceDateEpoch: epoch}})
	imgBytes, _ := os.ReadFile(img)

	out := filepath.Join(dir, "o", "pith.box")
	res, err := Build(ctx, Options{Image: img, Out: out, OEM: false})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != "1.2.3" || res.VirtualGB != 5 || res.Platform != "vagrant" || res.Catalog != filepath.Join(dir, "o", "pith.json") {
		t.Errorf("result %+v", res)
	}
	files := readBox(t, out)
	var names []string
	for _, f := range files {
		names = append(names, f.hdr.Name)
		if f.hdr.Uid != 0 || f.hdr.Gid != 0 || f.hdr.Uname != "" || f.hdr.Mode != 0o644 || !f.hdr.ModTime.Equal(time.Unix(epoch, 0)) || f.hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s: header %+v", f.hdr.Name, f.hdr)
		}
	}
	if strings.Join(names, " ") != "Vagrantfile box.img metadata.json" {
		t.Fatalf("entries %v, want sorted Vagrantfile box.img metadata.json", names)
	}
	if !bytes.Equal(files[1].data, imgBytes) {
		t.Error("box.img differs from the image")
	}
	var md Metadata
	if err := json.Unmarshal(files[2].data, &md); err != nil || md != (Metadata{"libvirt", "qcow2", 5}) {
		t.Errorf("metadata.json %s (%v)", files[2].data, err)
	}
	if vf := string(files[0].data); !strings.Contains(vf, `lv.driver = driver`) || !strings.Contains(vf, `ENV.fetch("PITH_LIBVIRT_DRIVER", "kvm")`) ||
		!strings.Contains(vf, `lv.disk_bus = "virtio"`) || strings.Contains(vf, "fw_cfg") {
		t.Errorf("Vagrantfile lacks the provider defaults:\n%s", vf)
	}

	// The catalog names the box with its real checksum.
	raw, _ := os.ReadFile(out)
	sum := sha256.Sum256(raw)
	cat, err := ReadCatalog(res.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	want := CatalogProvider{Name: "libvirt", URL: "file://" + out, ChecksumType: "sha256", Checksum: hex.EncodeToString(sum[:])}
	if cat.Name != "pith" || len(cat.Versions) != 1 || cat.Versions[0].Version != "1.2.3" || len(cat.Versions[0].Providers) != 1 || cat.Versions[0].Providers[0] != want {
		t.Errorf("catalog %+v, want provider %+v", cat, want)
	}
	if res.SHA256 != want.Checksum || res.Size != int64(len(raw)) {
		t.Errorf("result sum/size %s %d", res.SHA256, res.Size)
	}

	// Reproducible: the same image gives the same bytes.
	out2 := filepath.Join(dir, "again.box")
	if _, err := Build(ctx, Options{Image: img, Out: out2, OEM: false}); err != nil {
		t.Fatal(err)
	}
	raw2, _ := os.ReadFile(out2)
	if !bytes.Equal(raw, raw2) {
		t.Error("two boxes of the same image differ")
	}

	// A second version joins the catalog, ordered numerically.
	if _, err := Build(ctx, Options{Image: img, Out: out, Version: "1.10.0", OEM: false}); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(ctx, Options{Image: img, Out: out, Version: "1.9.0", OEM: false}); err != nil {
		t.Fatal(err)
	}
	cat, _ = ReadCatalog(res.Catalog)
	var vs []string
	for _, v := range cat.Versions {
		vs = append(vs, v.Version)
	}
	if strings.Join(vs, " ") != "1.2.3 1.9.0 1.10.0" {
		t.Errorf("catalog versions %v", vs)
	}
	// No temporaries left behind.
	left, _ := filepath.Glob(filepath.Join(dir, "o", ".*"))
	if len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestBuildErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	noManifest := t.TempDir()
	imgNoManifest := writeImage(t, noManifest, nil)
	img := writeImage(t, dir, &manifest.Manifest{Schema: 1, Version: "0.1.0"})
	otherCat := filepath.Join(dir, "other.json")
	os.WriteFile(otherCat, []byte(`{"name":"someone/else","versions":[]}`), 0o644)
	badCat := filepath.Join(dir, "bad.json")
	os.WriteFile(badCat, []byte(`not json`), 0o644)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no image", Options{Out: filepath.Join(dir, "a.box")}, "--image"},
		{"no version", Options{Image: imgNoManifest, Out: filepath.Join(noManifest, "a.box")}, "--version"},
		{"bad version", Options{Image: img, Out: filepath.Join(dir, "b.box"), Version: "v2"}, "--version"},
		{"catalog of another box", Options{Image: img, Out: filepath.Join(dir, "c.box"), Catalog: otherCat}, "--name someone/else"},
		{"catalog not json", Options{Image: img, Out: filepath.Join(dir, "d.box"), Catalog: badCat}, "not box metadata JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(ctx, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Rejected before writing: no box appeared for a bad version.
	if _, err := os.Stat(filepath.Join(dir, "b.box")); err == nil {
		t.Error("a box was written for a bad version")
	}
}

// TestOEMCloudConfigIsValid checks the box's OEM config with the parser
// pithd uses: valid, and making the vagrant user with the insecure key.
func TestOEMCloudConfigIsValid(t *testing.T) {
	ud, rep := cloudconfig.Parse([]byte(OEMCloudConfig()))
	if rep.HasErrors() || len(rep.Entries) != 0 || ud.Format != cloudconfig.FormatCloudConfig {
		t.Fatalf("format %v, report:\n%s", ud.Format, rep.Format("oem"))
	}
	c := ud.CloudConfig
	if len(c.Users) != 1 || c.Users[0].Name != User || len(c.Users[0].SSHAuthorizedKeys) != 1 || c.Users[0].SSHAuthorizedKeys[0] != InsecurePublicKey {
		t.Errorf("users %+v", c.Users)
	}
	if len(c.WriteFiles) != 1 || c.WriteFiles[0].Path != "/etc/sudoers.d/vagrant" || c.WriteFiles[0].Permissions != "0440" || c.WriteFiles[0].Content != "vagrant ALL=(ALL) NOPASSWD: ALL\n" {
		t.Errorf("write_files %+v", c.WriteFiles)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0.0", "1.0.0", 0}, {"0.9.0", "0.10.0", -1}, {"2", "1.9", 1}, {"1.0", "1.0.1", -1},
	} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
