package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/vm"
)

// imageDir returns the directory of the image built by `make image`.
func builtImageDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PITH_E2E_IMAGE_DIR")
	if dir == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("PITH_E2E_IMAGE_DIR is not set: CI must run the image tests through make e2e")
		}
		t.Skip("PITH_E2E_IMAGE_DIR is not set: run `make e2e` (it builds the image with `make image` first)")
	}
	return dir
}

// builtImageManifest is the manifest of make image's image.
func builtImageManifest(t *testing.T) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Read(filepath.Join(builtImageDir(t), manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func imgTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The design's table: number -> label, type GUID, gptprio attribute word of
// a freshly built image (USR-A priority 1, successful; USR-B empty).
var imgWantParts = []struct {
	num         int
	label, typ  string
	attrs, size string
}{
	{1, "EFI-SYSTEM", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "0000000000000000", "128.0 MiB"},
	{2, "BIOS-BOOT", "21686148-6449-6E6F-744E-656564454649", "0000000000000000", "2.0 MiB"},
	{3, "USR-A", "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6", "0101000000000000", "1024.0 MiB"},
	{4, "USR-B", "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6", "0000000000000000", "1024.0 MiB"},
	{6, "OEM", "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "0000000000000000", "128.0 MiB"},
	{9, "ROOT", "3884DD41-8582-4404-B9A8-E9B84F2DF50E", "0000000000000000", ""},
}

type imgPart struct{ first, last int64 }

// sgdiskInfo parses `sgdisk -i N` for the partition's sector range.
func imgSgdiskInfo(t *testing.T, out string) imgPart {
	t.Helper()
	num := func(key string) int64 {
		m := regexp.MustCompile(key + `: (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %q in sgdisk output:\n%s", key, out)
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n
	}
	return imgPart{num("First sector"), num("Last sector")}
}

// extract copies a partition to a sparse file for the fsck tools.
func imgExtract(t *testing.T, img string, p imgPart, name string) string {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	path := filepath.Join(t.TempDir(), name)
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	size := (p.last - p.first + 1) * 512
	if err := out.Truncate(size); err != nil {
		t.Fatal(err)
	}
	buf, zero := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n, err := in.ReadAt(buf[:min(int64(len(buf)), size-off)], p.first*512+off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				t.Fatal(err)
			}
		}
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
	}
	return path
}

func TestImage(t *testing.T) {
	dir := builtImageDir(t)
	img := filepath.Join(dir, "pith.img")
	m, err := manifest.Read(filepath.Join(dir, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}

	// make image signs the boot chain with its development Secure Boot
	// keys: the default image is the verified one, and beside it are the
	// certificates pith boot enrolls, those its manifest names.
	if m.SecureBoot == nil {
		t.Error("the default image's manifest has no secure_boot: make image built it unsigned")
	} else if c, err := vm.LoadSecureBootCerts(dir, vm.SecureBootCertPrefix); err != nil {
		t.Error(err)
	} else if err := c.CheckAgainst(m.SecureBoot.Certs); err != nil {
		t.Error(err)
	}

	p := imgTool(t, "sgdisk", "-p", img)
	parts := map[int]imgPart{}
	for _, w := range imgWantParts {
		row := regexp.MustCompile(`(?m)^\s+` + strconv.Itoa(w.num) + `\s+\d+\s+\d+\s+.*\s` + w.label + `$`)
		if !row.MatchString(p) {
			t.Errorf("sgdisk -p has no partition %d labelled %s:\n%s", w.num, w.label, p)
		}
		info := imgTool(t, "sgdisk", "-i", strconv.Itoa(w.num), img)
		for _, want := range []string{
			"Partition GUID code: " + w.typ,
			"Attribute flags: " + w.attrs,
			"Partition name: '" + w.label + "'",
			"(" + w.size,
		} {
			if !strings.Contains(info, want) {
				t.Errorf("sgdisk -i %d lacks %q:\n%s", w.num, want, info)
			}
		}
		parts[w.num] = imgSgdiskInfo(t, info)
		if parts[w.num].first%2048 != 0 {
			t.Errorf("partition %d starts at sector %d, not 1 MiB aligned", w.num, parts[w.num].first)
		}
		mp, ok := m.Partition(w.label)
		if !ok || mp.Number != w.num || mp.FirstLBA() != uint64(parts[w.num].first) || !strings.Contains(info, "Partition unique GUID: "+mp.GUID) {
			t.Errorf("manifest entry for %s disagrees with sgdisk: %+v", w.label, mp)
		}
	}
	for _, n := range []int{5, 7, 8} {
		if regexp.MustCompile(`(?m)^\s+` + strconv.Itoa(n) + `\s+\d+\s+\d+`).MatchString(p) {
			t.Errorf("partition %d exists; the design keeps it free", n)
		}
	}
	if v := imgTool(t, "sgdisk", "-v", img); !strings.Contains(v, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", v)
	}

	imgTool(t, "qemu-img", "check", filepath.Join(dir, "pith.qcow2"))

	esp := imgExtract(t, img, parts[1], "esp")
	imgTool(t, "fsck.vfat", "-n", esp)
	for _, f := range []string{"EFI/BOOT/BOOTX64.EFI", "grub/grub.cfg", "pith/vmlinuz-a", "pith/initrd-a"} {
		imgTool(t, "mdir", "-i", esp, "::/"+f)
	}
	env := filepath.Join(t.TempDir(), "grubenv")
	imgTool(t, "mcopy", "-i", esp, "::/grub/grubenv", env)
	if st, err := os.Stat(env); err != nil || st.Size() != 1024 {
		t.Errorf("grubenv is not a 1024-byte block: %v", err)
	}
	if got := imgTool(t, "grub-editenv", env, "list"); got != "pith_gen=1\nsaved_entry=a\nnext_entry=\npith_gen_end=1\n" {
		t.Errorf("grub-editenv list: %q", got)
	}
	cfg := imgTool(t, "mtype", "-i", esp, "::/grub/grub.cfg")
	usrA, _ := m.Partition("USR-A")
	for _, want := range []string{"--id a", "--id b", "pith.usr=PARTUUID=" + strings.ToLower(usrA.GUID), "load_env"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q", want)
		}
	}

	for num, label := range map[int]string{6: "OEM", 9: "ROOT"} {
		fs := imgExtract(t, img, parts[num], label)
		imgTool(t, "e2fsck", "-fn", fs)
		if got := imgTool(t, "blkid", "-p", "-o", "value", "-s", "LABEL", fs); strings.TrimSpace(got) != label {
			t.Errorf("partition %d filesystem label %q, want %s", num, got, label)
		}
		if label == "OEM" {
			// debugfs prints its banner on stderr: keep stdout only.
			got, err := exec.Command("debugfs", "-R", "cat /pith/platform", fs).Output()
			if err != nil || strings.TrimSpace(string(got)) != m.Platform {
				t.Errorf("OEM /pith/platform = %q, want %s", got, m.Platform)
			}
		}
	}

	usr := imgExtract(t, img, parts[3], "usr-a")
	if s := imgTool(t, "unsquashfs", "-s", usr); !strings.Contains(s, "Compression zstd") {
		t.Errorf("unsquashfs -s:\n%s", s)
	}
	list := imgTool(t, "unsquashfs", "-l", usr)
	for _, f := range []string{"lib/systemd/systemd", "bin/pithd", "bin/pithctl", "lib/os-release"} {
		if !strings.Contains(list, "squashfs-root/"+f+"\n") {
			t.Errorf("USR-A lacks /usr/%s", f)
		}
	}
	osr := imgTool(t, "unsquashfs", "-cat", usr, "lib/os-release")
	for _, want := range []string{"ID=pith\n", "ID_LIKE=debian\n", "VERSION_ID=" + m.Version} {
		if !strings.Contains(osr, want) {
			t.Errorf("os-release lacks %q:\n%s", want, osr)
		}
	}
}

// TestImageReproducible rebuilds the image from the inputs in its manifest
// (warm cache) and expects the same bytes.
func TestImageReproducible(t *testing.T) {
	NeedVMs(t, 1, 30*time.Second) // no guest, but a whole image build
	dir := builtImageDir(t)
	bin := os.Getenv("PITH_E2E_BIN_DIR")
	if bin == "" {
		t.Fatal("PITH_E2E_BIN_DIR is not set: run make e2e")
	}
	m, err := manifest.Read(filepath.Join(dir, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	in := m.Inputs
	cfg := fmt.Sprintf("version: %q\nplatform: %s\ndebian:\n  suite: %s\n  mirror: %s\n  packages: [%s]\n  kernel: %s\ndisk:\n  size: %d\nformats: [%s]\nsource_date_epoch: %d\n",
		m.Version, m.Platform, in.Suite, in.Mirror, strings.Join(in.Packages, ", "), in.KernelPackage, in.DiskSize, strings.Join(in.Formats, ", "), in.SourceDateEpoch)
	tmp := t.TempDir()
	cfgPath := filepath.Join(tmp, "pith.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	out := filepath.Join(tmp, "out")
	// make image bakes the development release key in: the same input here.
	pub := strings.TrimSuffix(updReleaseKey(t), ".key") + ".pub"
	args := []string{"build", "--config", cfgPath, "--out", out, "--agent-bin-dir", bin, "--release-key", pub}
	args = append(args, updSecureBootArgs(t, m)...) // and signs with the development Secure Boot keys
	if c := os.Getenv("PITH_E2E_CACHE_DIR"); c != "" {
		args = append(args, "--cache", c)
	}
	cmd := exec.Command(filepath.Join(bin, "pith"), args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=") // the config's epoch applies
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("second build: %v\n%s", err, b)
	}
	t.Logf("second build:\n%s", b)
	m2, err := manifest.Read(filepath.Join(out, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range m.Disk.Partitions {
		q := m2.Disk.Partitions[i]
		if p.GUID != q.GUID || p.ContentSHA256 != q.ContentSHA256 {
			t.Errorf("%s differs: %s %s vs %s %s", p.Label, p.GUID, p.ContentSHA256, q.GUID, q.ContentSHA256)
		}
	}
	for i, a := range m.Artifacts {
		if a.SHA256 != m2.Artifacts[i].SHA256 {
			t.Errorf("%s: SHA-256 %s, rebuilt %s", a.Name, a.SHA256, m2.Artifacts[i].SHA256)
		}
	}
	_, h1, _ := manifest.HashFile(filepath.Join(dir, "pith.img"))
	_, h2, _ := manifest.HashFile(filepath.Join(out, "pith.img"))
	if h1 != h2 {
		t.Errorf("pith.img differs between two builds with the same inputs")
	}
}
