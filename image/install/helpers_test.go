package install

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
)

// fixture is a small GPT disk image shaped like Pith's (a data partition,
// OEM ext4, ROOT last) with its manifest, as pith build leaves them.
type fixture struct {
	dir, img, manifest string
	size               int64
	oem                manifest.Partition
}

const mib = int64(1) << 20

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: make deps installs it", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return string(out)
}

func newFixture(t *testing.T, platform string) *fixture {
	t.Helper()
	needTools(t, "sgdisk", "mkfs.ext4", "debugfs")
	dir := t.TempDir()
	f := &fixture{dir: dir, img: filepath.Join(dir, "pith.img"), manifest: filepath.Join(dir, ManifestName), size: 64 * mib}
	if err := os.WriteFile(f.img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f.img, f.size); err != nil {
		t.Fatal(err)
	}
	run(t, "sgdisk", "-n", "3:1M:+8M", "-c", "3:USR-A", "-n", "6:9M:+8M", "-c", "6:OEM", "-n", "9:17M:0", "-c", "9:ROOT", f.img)
	// Data in the first partition, so the copy has an extent to move.
	data := bytes.Repeat([]byte("pith usr "), 100000)
	fh, err := os.OpenFile(f.img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt(data, 1*mib); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	oemDir := filepath.Join(dir, "oem")
	os.MkdirAll(filepath.Join(oemDir, "pith"), 0o755)
	os.WriteFile(filepath.Join(oemDir, "pith", "platform"), []byte(platform+"\n"), 0o644)
	run(t, "mkfs.ext4", "-q", "-F", "-L", "OEM", "-d", oemDir, "-E", "offset="+itoa(9*mib), f.img, "8M")
	f.oem = manifest.Partition{Partition: layout.Partition{Number: 6, Label: layout.LabelOEM, Start: 9 * mib, Size: 8 * mib}}
	root := manifest.Partition{Partition: layout.Partition{Number: 9, Label: layout.LabelRoot, Start: 17 * mib, Size: f.size - 17*mib - 33*512}}
	size, sum, err := manifest.HashFile(f.img)
	if err != nil {
		t.Fatal(err)
	}
	m := manifest.Manifest{Schema: manifest.SchemaVersion, Version: "1.2.3", Platform: platform,
		Disk:      manifest.Disk{Size: f.size, SectorSize: 512, Partitions: []manifest.Partition{f.oem, root}},
		Artifacts: []manifest.Artifact{{Name: "pith.img", Format: "raw", Size: size, SHA256: sum}}}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(f.manifest, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// oemFile writes a file into the image's OEM filesystem (as a platform's
// image build would) and the image's new size and hash into the manifest.
func (f *fixture) oemFile(t *testing.T, name, data string) {
	t.Helper()
	if err := writeOEMUserData(context.Background(), ext4At(f.img, f.oem.Start), name, []byte(data)); err != nil {
		t.Fatal(err)
	}
	var m manifest.Manifest
	b, err := os.ReadFile(f.manifest)
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		t.Fatal(err)
	}
	if m.Artifacts[0].Size, m.Artifacts[0].SHA256, err = manifest.HashFile(f.img); err != nil {
		t.Fatal(err)
	}
	b, _ = json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(f.manifest, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// sign writes the manifest's signature file with a new key and returns it.
func (f *fixture) sign(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	body, _ := os.ReadFile(f.manifest)
	sig, err := SignManifest(body, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.manifest+SignatureSuffix, sig, 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

// zst writes pith.img.zst beside the image.
func (f *fixture) zst(t *testing.T) string {
	t.Helper()
	in, _ := os.ReadFile(f.img)
	enc, _ := zstd.NewWriter(nil)
	p := f.img + ".zst"
	if err := os.WriteFile(p, enc.EncodeAll(in, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// blankDisk is an empty (sparse) target file.
func blankDisk(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	_, sum, err := manifest.HashFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}
