package channels

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/initramfs/verity"
)

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not installed: run hack/install-deps.sh (make deps)", name)
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// buildTestImage makes a small GPT disk like pith build's, with real tools:
// a vfat ESP holding pith/vmlinuz-a and pith/initrd-a, and a squashfs USR-A.
func buildTestImage(t testing.TB, dir, version string, kernel, initrd []byte, manifestContentSize bool) (usrFS []byte) {
	t.Helper()
	work := t.TempDir()
	// USR: a squashfs of some files.
	tree := filepath.Join(work, "usr")
	os.MkdirAll(filepath.Join(tree, "bin"), 0o755)
	os.WriteFile(filepath.Join(tree, "bin", "pithd"), testPayloadData(5, 2<<20), 0o755)
	os.WriteFile(filepath.Join(tree, "os-release"), []byte("VERSION="+version+"\n"), 0o644)
	sq := filepath.Join(work, "usr.sqfs")
	run(t, "mksquashfs", tree, sq, "-noappend", "-quiet", "-comp", "gzip", "-all-root")
	// The dm-verity tree after the (4 KiB padded) filesystem, as pith build
	// appends it.
	sqf, err := os.OpenFile(sq, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := sqf.Stat()
	root, err := verity.Format(sqf, st.Size(), []byte("salt"), [16]byte{})
	sqf.Close()
	if err != nil {
		t.Fatal(err)
	}
	usrFS, _ = os.ReadFile(sq)
	// ESP: vfat with the kernel and initrd, files added with mtools.
	esp := filepath.Join(work, "esp.img")
	run(t, "truncate", "-s", "33M", esp)
	run(t, "mkfs.vfat", "-n", "EFI-SYSTEM", esp)
	kf, inf := filepath.Join(work, "vmlinuz-a"), filepath.Join(work, "initrd-a")
	os.WriteFile(kf, kernel, 0o644)
	os.WriteFile(inf, initrd, 0o644)
	run(t, "mmd", "-i", esp, "::pith")
	run(t, "mcopy", "-i", esp, kf, inf, "::pith/")

	img := filepath.Join(dir, ImageFile)
	run(t, "truncate", "-s", "80M", img)
	run(t, "sgdisk", "-o",
		"-n", "1:2048:+33M", "-c", "1:EFI-SYSTEM", "-t", "1:EF00",
		"-n", "3:0:+16M", "-c", "3:USR-A", "-t", "3:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6",
		"-n", "4:0:+16M", "-c", "4:USR-B", "-t", "4:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6",
		img)
	espOff, usrOff := int64(2048*512), int64(2048*512+33<<20)
	writeAt := func(src string, off int64) {
		data, _ := os.ReadFile(src)
		f, err := os.OpenFile(img, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	writeAt(esp, espOff)
	writeAt(sq, usrOff)
	im := manifest.Manifest{Schema: manifest.SchemaVersion, Version: version, Platform: "qemu",
		KernelCmdline: map[string]string{"a": "console=ttyS0 pith.slot=a pith.usrhash=" + root, "b": "console=ttyS0 pith.slot=b"},
		Disk: manifest.Disk{SectorSize: 512, Partitions: []manifest.Partition{
			{Partition: layout.Partition{Number: 1, Label: "EFI-SYSTEM", Start: espOff, Size: 33 << 20}},
			{Partition: layout.Partition{Number: 3, Label: "USR-A", Start: usrOff, Size: 16 << 20}},
		}}}
	if manifestContentSize {
		sum := sha256.Sum256(usrFS)
		im.Disk.Partitions[1].ContentSize = int64(len(usrFS))
		im.Disk.Partitions[1].ContentSHA256 = hex.EncodeToString(sum[:])
		im.Disk.Partitions[1].Verity = &manifest.Verity{Algorithm: "sha256", BlockSize: 4096, DataSize: st.Size(), HashOffset: st.Size(), Salt: hex.EncodeToString([]byte("salt")), RootHash: root}
	}
	b, _ := im.Encode()
	os.WriteFile(filepath.Join(dir, manifest.FileName), b, 0o644)
	return usrFS
}

func TestReleaseFromImage(t *testing.T) {
	for _, withContentSize := range []bool{false, true} {
		t.Run(fmt.Sprintf("content_size=%v", withContentSize), func(t *testing.T) {
			imgDir, repo := t.TempDir(), t.TempDir()
			kernel, initrd := testPayloadData(7, 900<<10), testPayloadData(8, 1<<20)
			usrFS := buildTestImage(t, imgDir, "2.0.0", kernel, initrd, withContentSize)
			ir, err := OpenImage(imgDir)
			if err != nil {
				t.Fatal(err)
			}
			defer ir.Close()
			if ir.Version != "2.0.0" || ir.Platform != "linux/amd64" {
				t.Fatalf("image %+v", ir)
			}
			// The squashfs and its dm-verity tree, from the manifest or
			// from their superblocks.
			want := int64(len(usrFS))
			if ir.USRSize != want || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(ir.USRVerityHash) {
				t.Fatalf("USR size %d (%s), want %d", ir.USRSize, ir.HowSized, want)
			}
			key := testKey(t)
			m, err := Publish(repo, Release{Channel: "stable", Version: ir.Version, Platform: ir.Platform,
				Payloads: []PayloadSource{
					{Name: PayloadUSR, File: "usr", Open: ir.OpenUSR},
					{Name: PayloadKernel, File: "vmlinuz", Open: func() (io.ReadCloser, error) { return ir.OpenESPFile("pith/vmlinuz-a") }},
					{Name: PayloadInitrd, File: "initrd", Open: func() (io.ReadCloser, error) { return ir.OpenESPFile("pith/initrd-a") }},
				}}, []ed25519.PrivateKey{key}, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			// Apply the release into USR-B of a copy of the image and check
			// the result with unsquashfs, as the node would mount it.
			for name, wantData := range map[string][]byte{PayloadKernel: kernel, PayloadInitrd: initrd} {
				p, _ := m.Payload(name)
				dst := filepath.Join(t.TempDir(), name)
				if err := InstallFile(filepath.Join(repo, p.Path), p, dst); err != nil {
					t.Fatal(err)
				}
				if got, _ := os.ReadFile(dst); !bytes.Equal(got, wantData) {
					t.Fatalf("%s from the ESP differs", name)
				}
			}
			usr, _ := m.Payload(PayloadUSR)
			if kp, _ := m.Payload(PayloadKernel); usr.Compression != CompressionNone || kp.Compression != CompressionZstd {
				t.Fatalf("compression: usr %s (a squashfs of random data ships raw), kernel %s", usr.Compression, kp.Compression)
			}
			usrBOff := int64(2048*512 + 33<<20 + 16<<20)
			img := filepath.Join(imgDir, ImageFile)
			if _, err := WritePayload(context.Background(), filepath.Join(repo, usr.Path), usr, Target{Path: img, Offset: usrBOff, Limit: 16 << 20}, nil); err != nil {
				t.Fatal(err)
			}
			part := filepath.Join(t.TempDir(), "usr-b")
			f, _ := os.Open(img)
			data := make([]byte, 16<<20)
			f.ReadAt(data, usrBOff)
			f.Close()
			os.WriteFile(part, data, 0o644)
			out, err := exec.Command("unsquashfs", "-cat", part, "os-release").CombinedOutput()
			if err != nil || string(out) != "VERSION=2.0.0\n" {
				t.Fatalf("unsquashfs of the written USR-B: %v %q", err, out)
			}
		})
	}
}

// TestReleaseRefusesChangedImage: a USR-A that no longer matches the image
// manifest's content hash is not released, and the repository is untouched.
func TestReleaseRefusesChangedImage(t *testing.T) {
	imgDir, repo := t.TempDir(), t.TempDir()
	buildTestImage(t, imgDir, "2.0.0", []byte("kernel"), []byte("initrd"), true)
	ir, err := OpenImage(imgDir)
	if err != nil {
		t.Fatal(err)
	}
	defer ir.Close()
	f, _ := os.OpenFile(filepath.Join(imgDir, ImageFile), os.O_WRONLY, 0)
	f.WriteAt([]byte{0xff}, ir.USROffset+ir.USRSize-100)
	f.Close()
	_, err = Publish(repo, Release{Channel: "stable", Version: "2.0.0", Platform: ir.Platform,
		Payloads: []PayloadSource{{Name: PayloadUSR, File: "usr", Open: ir.OpenUSR}}}, []ed25519.PrivateKey{testKey(t)}, nil)
	if !errors.Is(err, ErrHash) {
		t.Fatalf("changed USR-A: %v", err)
	}
	if ents, _ := os.ReadDir(repo); len(ents) != 1 || ents[0].Name() != "channels" {
		t.Fatalf("repository after a failed release: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(repo, "channels")); len(ents) != 0 {
		t.Fatalf("channel written after a failed release: %v", ents)
	}
}

// A release must carry the dm-verity root hash nodes boot with: images
// without one, or with two that disagree, are not released.
func TestReleaseNeedsVerityRoot(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*manifest.Manifest)
		want   string
	}{
		{"no root hash", func(m *manifest.Manifest) {
			m.Disk.Partitions[1].Verity = nil
			m.KernelCmdline["a"] = "console=ttyS0 pith.slot=a"
		}, "no dm-verity root hash"},
		{"manifest and kernel line differ", func(m *manifest.Manifest) {
			m.KernelCmdline["a"] = "console=ttyS0 pith.slot=a pith.usrhash=" + strings.Repeat("ab", 32)
		}, "on slot a's kernel line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			buildTestImage(t, dir, "2.0.0", []byte("kernel"), []byte("initrd"), true)
			mp := filepath.Join(dir, manifest.FileName)
			m, err := manifest.Read(mp)
			if err != nil {
				t.Fatal(err)
			}
			tc.change(m)
			b, _ := m.Encode()
			os.WriteFile(mp, b, 0o644)
			if _, err := OpenImage(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenImage = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
