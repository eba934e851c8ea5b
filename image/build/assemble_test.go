package build

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/sbom"
	"github.com/pith-os/pith/image/slot"
	"github.com/pith-os/pith/initramfs/verity"
)

// fakeInputs is a stand-in rootfs for unit tests only: the real one comes
// from image/rootfs and initramfs (exercised by e2e/image_test.go).
func fakeInputs(t *testing.T) Inputs {
	t.Helper()
	dir := t.TempDir()
	usr := filepath.Join(dir, "usr")
	for p, c := range map[string]string{
		"lib/systemd/systemd": "#!fake systemd\n",
		"bin/pithd":           "fake pithd\n",
		"lib/os-release":      "ID=pith\nVERSION_ID=9.9.9\n",
	} {
		os.MkdirAll(filepath.Join(usr, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(usr, p), []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Incompressible: the squashfs spans several blocks, as dm-verity needs.
	noise := make([]byte, 64<<10)
	rand.Read(noise)
	if err := os.WriteFile(filepath.Join(usr, "lib", "noise"), noise, 0o644); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinuz")
	initrd := filepath.Join(dir, "initrd")
	os.WriteFile(kernel, bytes.Repeat([]byte("kernel"), 100000), 0o644)
	os.WriteFile(initrd, bytes.Repeat([]byte("initrd"), 50000), 0o644)
	c := config.Default()
	c.Version = "9.9.9"
	c.DiskSize = layout.MinDiskSize()
	c.Epoch = config.DefaultEpoch
	return Inputs{Config: c, UsrDir: usr, KernelPath: kernel, KernelVersion: "6.1.0-fake", InitrdPath: initrd}
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// extract copies partition p of img to a sparse temp file.
func extract(t *testing.T, img string, p manifest.Partition) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(t.TempDir(), p.Label)
	o, _ := os.Create(out)
	defer o.Close()
	o.Truncate(p.Size)
	buf := make([]byte, 1<<20)
	zero := make([]byte, 1<<20)
	for off := int64(0); off < p.Size; off += int64(len(buf)) {
		n, err := f.ReadAt(buf, p.Start+off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			o.WriteAt(buf[:n], off)
		}
		if err == io.EOF {
			break
		}
	}
	return out
}

func TestAssemble(t *testing.T) {
	in := fakeInputs(t)
	in.UsrHash, in.CacheDir = "tree-1", t.TempDir()
	host := sbom.Deb{Name: "grub-pc-bin", Version: "2.06-13+deb12u2", Arch: "amd64", Archive: sbom.HostArchive}
	bpo := sbom.Deb{Name: "grub-efi-amd64-bin", Version: "2.12-1~bpo12+1", Arch: "amd64", Archive: "bookworm-backports", SHA256: strings.Repeat("a", 64)}
	in.BootLoaders = []sbom.BootLoader{{Boot: sbom.BootBIOS, File: "core", Packages: []sbom.Deb{host}}, {Boot: sbom.BootUEFI, File: "efi", Packages: []sbom.Deb{bpo}}}
	ctx := context.Background()
	var lines []string
	r := &Reporter{Log: func(f string, a ...any) { lines = append(lines, f) }}
	work := t.TempDir()
	arts, m, err := Assemble(ctx, in, work, r)
	if err != nil {
		t.Fatal(err)
	}
	img := arts[RawName]
	// The manifest names each boot path's GRUB version and packages.
	wantBL := []manifest.BootLoader{
		{Boot: "bios", File: "core", Version: "2.06-13+deb12u2", Packages: []manifest.BootPackage{{Name: "grub-pc-bin", Version: "2.06-13+deb12u2", Arch: "amd64", Origin: "build host"}}},
		{Boot: "uefi", File: "efi", Version: "2.12-1~bpo12+1", Packages: []manifest.BootPackage{{Name: "grub-efi-amd64-bin", Version: "2.12-1~bpo12+1", Arch: "amd64", Origin: "bookworm-backports"}}},
	}
	if !reflect.DeepEqual(m.BootLoaders, wantBL) {
		t.Errorf("manifest boot loaders %+v, want %+v", m.BootLoaders, wantBL)
	}
	if len(r.Steps) < 5 || len(lines) < 10 || strings.Contains(r.Steps[0].Detail, "cached") {
		t.Errorf("steps %v", r.Steps)
	}

	p := tool(t, "sgdisk", "-p", img)
	for _, want := range []string{"EFI-SYSTEM", "BIOS-BOOT", "USR-A", "USR-B", "OEM", "ROOT"} {
		if !strings.Contains(p, want) {
			t.Errorf("sgdisk -p lacks %s", want)
		}
	}
	parts, err := slot.ReadParts(img)
	if err != nil || parts[slot.A].Prio != slot.InitialA || parts[slot.A].PartUUID != m.Disk.Partitions[2].GUID {
		t.Errorf("slot state %+v %v", parts, err)
	}
	esp, _ := m.Partition(layout.LabelESP)
	espImg := extract(t, img, esp)
	tool(t, "fsck.vfat", "-n", espImg)
	cfg := tool(t, "mtype", "-i", espImg, "::/grub/grub.cfg")
	if !strings.Contains(cfg, "pith.usr=PARTUUID="+strings.ToLower(parts[slot.A].PartUUID)) || !strings.Contains(cfg, m.KernelCmdline["b"]) {
		t.Errorf("grub.cfg:\n%s", cfg)
	}
	env := filepath.Join(t.TempDir(), "grubenv")
	tool(t, "mcopy", "-i", espImg, "::/grub/grubenv", env)
	if l := tool(t, "grub-editenv", env, "list"); l != "pith_gen=1\nsaved_entry=a\nnext_entry=\npith_gen_end=1\n" {
		t.Errorf("grubenv: %q", l)
	}
	for _, f := range []string{"EFI/BOOT/BOOTX64.EFI", "pith/vmlinuz-a", "pith/initrd-a"} {
		tool(t, "mdir", "-i", espImg, "::/"+f)
	}
	// Slot a's root hash: on the ESP for grub.cfg, at the end of the
	// manifest's kernel line, in the manifest's USR-A verity record.
	usr, _ := m.Partition(layout.LabelUSRA)
	v := usr.Verity
	if v == nil || v.Algorithm != "sha256" || v.BlockSize != 4096 || v.HashOffset != v.DataSize || len(v.Salt) != 64 {
		t.Fatalf("USR-A verity record %+v", v)
	}
	if got := tool(t, "mtype", "-i", espImg, "::/pith/verity-a.cfg"); !strings.Contains(got, "\nset pith_usrhash="+v.RootHash+"\n") {
		t.Errorf("pith/verity-a.cfg: %q, want root hash %s", got, v.RootHash)
	}
	if !strings.HasSuffix(m.KernelCmdline["a"], " pith.usrhash="+v.RootHash) || strings.Contains(m.KernelCmdline["b"], "pith.usrhash") {
		t.Errorf("kernel lines: a %q, b %q", m.KernelCmdline["a"], m.KernelCmdline["b"])
	}
	if usr.ContentSize != v.DataSize+verity.TreeSize(v.DataSize) {
		t.Errorf("USR-A content %d bytes, want squashfs %d + tree %d", usr.ContentSize, v.DataSize, verity.TreeSize(v.DataSize))
	}
	for _, l := range []string{layout.LabelOEM, layout.LabelRoot} {
		pp, _ := m.Partition(l)
		ext := extract(t, img, pp)
		tool(t, "e2fsck", "-fn", ext)
		if l == layout.LabelOEM {
			if got := tool(t, "debugfs", "-R", "cat /pith/platform", ext); !strings.Contains(got, "qemu") {
				t.Errorf("OEM platform %q", got)
			}
		}
	}
	usrImg := extract(t, img, usr)
	if l := tool(t, "unsquashfs", "-l", usrImg); !strings.Contains(l, "squashfs-root/bin/pithd") {
		t.Errorf("unsquashfs -l:\n%s", l)
	}
	// veritysetup agrees with the recorded tree, and notices a changed block.
	verify := func() error {
		return exec.Command("veritysetup", "verify", usrImg, usrImg, v.RootHash, "--hash-offset="+strconv.FormatInt(v.HashOffset, 10)).Run()
	}
	if err := verify(); err != nil {
		t.Errorf("veritysetup verify of USR-A with the manifest's root hash: %v", err)
	}
	uf, _ := os.OpenFile(usrImg, os.O_RDWR, 0)
	uf.WriteAt([]byte("tampered"), v.DataSize-4096)
	uf.Close()
	if err := verify(); err == nil {
		t.Error("veritysetup verify accepts USR-A with a changed block")
	}
	tool(t, "qemu-img", "check", arts[Qcow2Name])
	// The BIOS core.img sits in BIOS-BOOT, and the MBR points at it.
	bios, _ := m.Partition(layout.LabelBIOSBoot)
	raw, _ := os.ReadFile(img)
	if got := strconv.FormatUint(uint64(raw[0x5c])|uint64(raw[0x5d])<<8|uint64(raw[0x5e])<<16|uint64(raw[0x5f])<<24, 10); got != strconv.FormatUint(bios.FirstLBA(), 10) {
		t.Errorf("MBR points at LBA %s, BIOS-BOOT starts at %d", got, bios.FirstLBA())
	}

	// Reproducible: same inputs, same bytes (manifest included), with USR-A
	// from the cache the first build filled (mksquashfs's own
	// reproducibility is fsimg's test; bench-build compares a cold build).
	r2 := &Reporter{}
	arts2, _, err := Assemble(ctx, in, t.TempDir(), r2)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r2.Steps[0].Detail, "cached") {
		t.Errorf("second build did not use the cached USR-A: %q", r2.Steps[0].Detail)
	}
	for _, name := range []string{RawName, Qcow2Name, manifest.FileName} {
		_, a, _ := manifest.HashFile(arts[name])
		_, b, _ := manifest.HashFile(arts2[name])
		if a != b {
			t.Errorf("%s differs between two builds", name)
		}
	}
	// Different inputs, different GUIDs.
	in.Config.Version = "9.9.10"
	in.Config.Formats = []string{"raw"}
	arts3, m3, err := Assemble(ctx, in, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m3.Disk.GUID == m.Disk.GUID || arts3[Qcow2Name] != "" {
		t.Errorf("version change kept disk GUID, or qcow2 built without being asked")
	}
}

func TestAssembleRejects(t *testing.T) {
	in := fakeInputs(t)
	in.Config.DiskSize = 2 * layout.GiB
	if _, _, err := Assemble(context.Background(), in, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "disk too small") {
		t.Errorf("2 GiB disk: %v", err)
	}
	in = fakeInputs(t)
	in.Config.Formats = []string{"box"}
	if _, _, err := Assemble(context.Background(), in, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "not built yet") {
		t.Errorf("box format: %v", err)
	}
}

func TestPrepareOutAndPublish(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := PrepareOut(file); err == nil || !strings.Contains(err.Error(), "is a file") {
		t.Errorf("file as out dir: %v", err)
	}
	if _, err := PrepareOut(filepath.Join(file, "sub")); err == nil {
		t.Error("out dir under a file accepted")
	}
	out := filepath.Join(dir, "out")
	work, err := PrepareOut(out)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, "pith.manifest.json"), []byte("stale"), 0o644)
	a := filepath.Join(work, "a")
	os.WriteFile(a, []byte("A"), 0o644)
	if _, err := Publish(out, map[string]string{"pith.img": a, "pith.manifest.json": filepath.Join(work, "missing")}, "pith.manifest.json"); err == nil {
		t.Error("publish with a missing artifact succeeded")
	}
	if _, err := os.Stat(filepath.Join(out, "pith.img")); err == nil {
		t.Error("partial publish left pith.img")
	}
	mf := filepath.Join(work, "m")
	os.WriteFile(mf, []byte("{}"), 0o644)
	infos, err := Publish(out, map[string]string{"pith.img": a, "pith.manifest.json": mf}, "pith.manifest.json")
	if err != nil || len(infos) != 2 || infos[1].Name != "pith.manifest.json" {
		t.Fatalf("publish: %v %+v", err, infos)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "pith.manifest.json")); string(b) != "{}" {
		t.Error("manifest not replaced")
	}
}

func TestCheckFree(t *testing.T) {
	dir := t.TempDir()
	if err := checkFree(dir, 1); err != nil {
		t.Errorf("1 byte: %v", err)
	}
	if err := checkFree(dir, 1<<62); err == nil || !strings.Contains(err.Error(), "not enough space in "+dir) {
		t.Errorf("4 EiB: %v", err)
	}
}

func TestExplain(t *testing.T) {
	err := explain(&os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, "/o")
	if err == nil || !strings.Contains(err.Error(), "no space left on the device holding /o") {
		t.Errorf("explain: %v", err)
	}
}

func TestBuildRejectsBeforeWork(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	small := config.Default()
	small.DiskSize = 2 * layout.GiB
	box := config.Default()
	box.Formats = []string{"raw", "box"}
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"out is a file", Options{Config: config.Default(), OutDir: file}, "is a file, not a directory"},
		{"disk too small", Options{Config: small, OutDir: filepath.Join(dir, "o1")}, "disk too small for the content"},
		{"format not built", Options{Config: box, OutDir: filepath.Join(dir, "o2")}, `format "box" is not built yet`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Build: %v, want one line containing %q", err, tc.want)
			}
			if tc.o.OutDir != file {
				if _, err := os.Stat(tc.o.OutDir); err == nil {
					t.Errorf("%s created although the build was rejected", tc.o.OutDir)
				}
			}
		})
	}
}
