// Package build runs `pith build`: the rootfs (image/rootfs), the initramfs
// (initramfs), then the filesystems, boot chain and disk of the image
// (Assemble), writing pith.img, pith.qcow2 and pith.manifest.json.
package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/disk"
	"github.com/pith-os/pith/image/fsimg"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/sbom"
	"github.com/pith-os/pith/image/secureboot"
	"github.com/pith-os/pith/image/slot"
	"github.com/pith-os/pith/initramfs/verity"
)

// Artifact names in the output directory.
const (
	RawName   = "pith.img"
	Qcow2Name = "pith.qcow2"
)

// RootSize is the size of ROOT's filesystem in the image; the initramfs
// grows it (and its partition) to the disk on first boot.
const RootSize = 256 * layout.MiB

// SquashfsLevel is USR-A's zstd level. Measured on the default /usr
// (537 MiB, 2 busy cores): level 3 gives 192 MB in 10 s, 6 gives 181 MB in
// 20 s, 8 gives 180 MB in 30 s, 12 gives 179 MB in 127 s.
const SquashfsLevel = 6

// Inputs are what Assemble turns into an image.
type Inputs struct {
	Config        config.Config
	UsrDir        string // becomes USR-A
	KernelPath    string // vmlinuz
	KernelVersion string
	InitrdPath    string
	AgentSHA256   string // recorded in the manifest
	// UsrHash identifies UsrDir's content (rootfs.TreeHash). With CacheDir
	// set, USR images are cached under it by this hash, so an unchanged
	// tree is not compressed again.
	UsrHash  string
	CacheDir string
	// DebugUnverifiedUSR: the initramfs accepts pith.verity=off.
	DebugUnverifiedUSR bool
	// SecureBoot signs the UEFI boot chain with the operator's keys.
	SecureBoot *secureboot.Keys
	// Grub makes the UEFI boot file (rootfs.FetchGrub); the zero Grub
	// is the host's.
	Grub bootloader.Grub
	// BootLoaders name the GRUB packages of each boot path
	// (rootfs.BootLoaders), recorded in the manifest.
	BootLoaders []sbom.BootLoader
}

// Seed names the build inputs that all GUIDs and filesystem UUIDs derive
// from: the rootfs inputs plus what shapes the disk.
func Seed(c config.Config) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", c.Hash(), c.Platform, c.DiskSize))
	return hex.EncodeToString(h[:16])
}

// assembly is one run of Assemble: its inputs, the disk layout, and what
// each step leaves for the next.
type assembly struct {
	ctx     context.Context
	in      Inputs
	c       config.Config
	workDir string
	r       *Reporter

	seed      string
	table     *layout.Table
	espVolID  uint32
	espSerial string

	usrImg    string    // USR-A: squashfs + hash tree
	usrVerity usrVerity // its root hash
	params    bootloader.Params
	core      []byte // BIOS core.img for BIOS-BOOT
	bootCode  []byte // MBR boot code
	espImg    string
	oemImg    string
	rootImg   string
	raw       string
	attrs     map[string]uint64
	written   []disk.Written
	artifacts map[string]string // final name -> path in workDir
	rawHash   chan hashed       // pith.img's SHA-256, computed beside qcow2
	m         *manifest.Manifest
}

type hashed struct {
	size int64
	sum  string
	err  error
}

func (a *assembly) w(name string) string { return filepath.Join(a.workDir, name) }

func (a *assembly) part(label string) layout.Partition { return a.table.MustLabel(label) }

func (a *assembly) fsUUID(label string) string { return layout.DeriveUUID(a.seed, "fs/"+label) }

func (a *assembly) hashSeed(label string) string {
	return layout.DeriveUUID(a.seed, "fs/"+label+"/hash_seed")
}

// Assemble builds the partition contents and the disk in workDir and returns
// the artifacts (temporary paths in workDir, keyed by final name) and the
// manifest. Nothing is written outside workDir. Each step is a method below,
// reported under its name.
func Assemble(ctx context.Context, in Inputs, workDir string, r *Reporter) (map[string]string, *manifest.Manifest, error) {
	a, err := newAssembly(ctx, in, workDir, r)
	if err != nil {
		return nil, nil, err
	}
	steps := []struct {
		name string
		fn   func() (string, error)
		skip bool
	}{
		{name: "USR-A squashfs + dm-verity", fn: a.usr},
		{name: "boot loader", fn: a.bootChain},
		{name: "ESP, OEM and ROOT filesystems", fn: a.filesystems},
		{name: "disk " + RawName, fn: a.disk},
		{name: "qcow2 " + Qcow2Name, fn: a.qcow2, skip: !has(a.c.Formats, "qcow2")},
		{name: "SHA-256 of artifacts", fn: a.hashArtifacts},
	}
	for _, s := range steps {
		if s.skip {
			continue
		}
		if err := r.Step(s.name, s.fn); err != nil {
			if a.rawHash != nil {
				<-a.rawHash // the hashing goroutine reads raw from workDir
			}
			return nil, nil, err
		}
	}
	if err := a.writeManifest(); err != nil {
		return nil, nil, err
	}
	return a.artifacts, a.m, nil
}

// newAssembly checks the formats and derives the disk layout and IDs from
// the config's seed.
func newAssembly(ctx context.Context, in Inputs, workDir string, r *Reporter) (*assembly, error) {
	c := in.Config
	if err := CheckFormats(c.Formats); err != nil {
		return nil, err
	}
	if err := checkPlatformFormats(c); err != nil {
		return nil, err
	}
	a := &assembly{ctx: ctx, in: in, c: c, workDir: workDir, r: r, seed: Seed(c), artifacts: map[string]string{}}
	var err error
	if a.table, err = layout.New(c.DiskSize, a.seed); err != nil {
		return nil, err
	}
	a.espVolID = layout.DeriveVolumeID(a.seed, "fs/"+layout.LabelESP)
	a.espSerial = fsimg.VfatSerial(a.espVolID)
	return a, nil
}

// usr makes USR-A: the squashfs of /usr and its dm-verity hash tree.
func (a *assembly) usr() (string, error) {
	var cached bool
	var err error
	a.usrImg, cached, a.usrVerity, err = usrImage(a.ctx, a.in, a.workDir, a.r)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(a.usrImg)
	if err != nil {
		return "", err
	}
	if err := a.table.CheckFits(map[string]int64{layout.LabelUSRA: st.Size()}); err != nil {
		return "", err
	}
	how := fmt.Sprintf("zstd -%d", SquashfsLevel)
	if cached {
		how = "cached, same /usr tree as " + filepath.Base(a.usrImg) + ", tree checked"
	}
	return fmt.Sprintf("%s (%s squashfs, %s, + %s hash tree), root hash %s", layout.Human(st.Size()), layout.Human(a.usrVerity.DataSize), how,
		layout.Human(a.usrVerity.TreeSize), a.usrVerity.RootHash[:16]), nil
}

// bootChain makes GRUB's BIOS and UEFI images, grub.cfg, grubenv and slot
// a's root hash file.
func (a *assembly) bootChain() (string, error) {
	c := a.c
	a.params = bootloader.Params{
		Version: c.Version, Platform: c.Platform, Timeout: 1,
		USR:  map[string]string{"a": a.part(layout.LabelUSRA).GUID, "b": a.part(layout.LabelUSRB).GUID},
		Root: a.part(layout.LabelRoot).GUID, OEM: a.part(layout.LabelOEM).GUID,
		Extra:   platformArgs[c.Platform],
		UsrHash: map[string]string{"a": a.usrVerity.RootHash},
	}
	a.params.Arch = c.Arch
	a.params.SecureBoot = a.in.SecureBoot != nil
	bios := a.part(layout.LabelBIOSBoot)
	var sec *bootloader.SecureConfig
	if a.in.SecureBoot != nil {
		sec = &bootloader.SecureConfig{PubKey: a.in.SecureBoot.GrubPub()}
	}
	// The UEFI image is BOOTX64.EFI in the work dir whatever the
	// architecture; the ESP names it as the firmware looks for it.
	if err := bootloader.MakeEFIArch(a.ctx, a.in.Grub, c.Arch, a.w("BOOTX64.EFI"), a.espSerial, sec); err != nil {
		return "", err
	}
	efi, _ := bootloader.EFIFor(c.Arch)
	// No BIOS on arm64: BIOS-BOOT stays in the table (the same layout on
	// every architecture) and empty, and the MBR has no boot code.
	if bootloader.HasBIOS(c.Arch) {
		var err error
		if a.core, err = bootloader.MakeCore(a.ctx, a.workDir, a.espSerial, bios.FirstLBA(), bios.Size); err != nil {
			return "", err
		}
		if a.bootCode, err = bootloader.BootCode(bios.FirstLBA()); err != nil {
			return "", err
		}
	}
	cfg, err := bootloader.GrubCfg(a.params)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(a.w("grub.cfg"), cfg, 0o644); err != nil {
		return "", err
	}
	vcfg, err := bootloader.VerityCfg(a.usrVerity.RootHash)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(a.w("verity-a.cfg"), vcfg, 0o644); err != nil {
		return "", err
	}
	env, err := slot.InitialEnv().Encode()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(a.w("grubenv"), env, 0o644); err != nil {
		return "", err
	}
	signed := ""
	if a.in.SecureBoot != nil {
		if err := a.signBootChain(); err != nil {
			return "", err
		}
		signed = ", signed for Secure Boot (db " + secureboot.Fingerprint(a.in.SecureBoot.Certs["db"])[:16] + ")"
	}
	if !bootloader.HasBIOS(c.Arch) {
		return fmt.Sprintf("UEFI %s (%s, no BIOS), A/B grub.cfg, slot A root hash%s", efi.File, c.Arch, signed), nil
	}
	return fmt.Sprintf("BIOS core.img %s, UEFI %s, A/B grub.cfg, slot A root hash%s", layout.Human(int64(len(a.core))), efi.File, signed), nil
}

// filesystems makes the ESP (boot chain, slot a's kernel and initrd), OEM
// (the platform) and ROOT (empty, grown on first boot).
func (a *assembly) filesystems() (string, error) {
	c := a.c
	a.espImg, a.oemImg, a.rootImg = a.w("esp.vfat"), a.w("oem.ext4"), a.w("root.ext4")
	files := []fsimg.File{
		{Src: a.w("BOOTX64.EFI"), Dst: "EFI/BOOT/" + bootloader.EFIFile(c.Arch)},
		{Src: a.w("grub.cfg"), Dst: "grub/grub.cfg"},
		{Src: a.w("grubenv"), Dst: "grub/grubenv"},
		{Src: a.in.KernelPath, Dst: "pith/vmlinuz-a"},
		{Src: a.in.InitrdPath, Dst: "pith/initrd-a"},
		{Src: a.w("verity-a.cfg"), Dst: bootloader.VerityCfgPath("a")},
	}
	if k := a.in.SecureBoot; k != nil {
		files[3].Src, files[4].Src = a.w("vmlinuz-a"), a.w("initrd-a")
		for _, f := range files[1:] {
			if f.Dst == "grub/grubenv" {
				continue
			}
			files = append(files, fsimg.File{Src: f.Src + secureboot.SigSuffix, Dst: f.Dst + secureboot.SigSuffix})
		}
		// The boot chain's public halves, for the update agent's check of a
		// release before it writes anything.
		files = append(files,
			fsimg.File{Src: k.GrubPub(), Dst: SecureBootGrubPub},
			fsimg.File{Src: filepath.Join(k.Dir, secureboot.CertFile("db")), Dst: SecureBootDBCert})
	}
	if err := fsimg.Vfat(a.ctx, a.espImg, a.part(layout.LabelESP).Size, layout.LabelESP, a.espVolID, files, c.Epoch); err != nil {
		return "", err
	}
	oemDir := a.w("oem")
	if err := os.MkdirAll(filepath.Join(oemDir, "pith"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(oemDir, "pith", "platform"), []byte(c.Platform+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := fsimg.Ext4(a.ctx, a.oemImg, a.part(layout.LabelOEM).Size, layout.LabelOEM, a.fsUUID(layout.LabelOEM), a.hashSeed(layout.LabelOEM), oemDir, c.Epoch); err != nil {
		return "", err
	}
	rootSize := min(RootSize, a.part(layout.LabelRoot).Size)
	if err := fsimg.Ext4(a.ctx, a.rootImg, rootSize, layout.LabelRoot, a.fsUUID(layout.LabelRoot), a.hashSeed(layout.LabelRoot), "", c.Epoch); err != nil {
		return "", err
	}
	return fmt.Sprintf("ESP vfat %s, OEM ext4 (platform %s), ROOT ext4 %s", a.espSerial, c.Platform, layout.Human(rootSize)), nil
}

// disk writes the GPT disk pith.img with the partition contents, then
// starts hashing it in the background.
func (a *assembly) disk() (string, error) {
	a.raw = a.w(RawName)
	attrA, _ := slot.InitialA.Apply(0)
	attrB, _ := slot.InitialB.Apply(0)
	a.attrs = map[string]uint64{layout.LabelUSRA: attrA, layout.LabelUSRB: attrB}
	start := time.Now()
	bar := a.r.Bar(0, "disk")
	var err error
	a.written, err = disk.Write(a.ctx, a.raw, disk.Options{
		Table: a.table,
		Contents: []disk.Content{
			{Label: layout.LabelESP, Path: a.espImg},
			{Label: layout.LabelBIOSBoot, Data: a.core},
			{Label: layout.LabelUSRA, Path: a.usrImg},
			{Label: layout.LabelOEM, Path: a.oemImg},
			{Label: layout.LabelRoot, Path: a.rootImg},
		},
		Attributes: a.attrs,
		BootCode:   a.bootCode,
		Progress: func(done, total int64) {
			bar.ChangeMax64(total)
			bar.Set64(done)
		},
	})
	bar.Finish()
	if err != nil {
		return "", err
	}
	if wantsRaw(a.c.Formats) {
		a.artifacts[RawName] = a.raw
	}
	// Hash the raw image while qemu-img converts it: two processes, two cores.
	a.rawHash = make(chan hashed, 1)
	go func() {
		if !wantsRaw(a.c.Formats) {
			a.rawHash <- hashed{}
			return
		}
		n, sum, err := manifest.HashFile(a.raw)
		a.rawHash <- hashed{n, sum, err}
	}()
	var content int64
	for _, wr := range a.written {
		content += wr.Size
	}
	return fmt.Sprintf("%s disk, %s of partition content copied at %s, %s allocated",
		layout.Human(a.c.DiskSize), layout.Human(content), rate(content, time.Since(start)), layout.Human(allocated(a.raw))), nil
}

// qcow2 converts pith.img to pith.qcow2.
func (a *assembly) qcow2() (string, error) {
	q := a.w(Qcow2Name)
	start := time.Now()
	bar := a.r.Bar(100, "qcow2")
	err := disk.Qcow2(a.ctx, a.raw, q, func(p float64) { bar.Set(int(p)) })
	bar.Finish()
	if err != nil {
		return "", err
	}
	st, err := os.Stat(q)
	if err != nil {
		return "", err
	}
	a.artifacts[Qcow2Name] = q
	return fmt.Sprintf("%s compressed, %s of raw data read at %s", layout.Human(st.Size()), layout.Human(allocated(a.raw)), rate(allocated(a.raw), time.Since(start))), nil
}

// hashArtifacts fills in the manifest: inputs, kernel lines, partitions
// with their content hashes, and the artifacts' SHA-256.
func (a *assembly) hashArtifacts() (string, error) {
	c := a.c
	m := &manifest.Manifest{
		Schema: manifest.SchemaVersion, Version: c.Version, Platform: c.Platform, Arch: c.Arch,
		Inputs: manifest.Inputs{
			ConfigHash: c.Hash(), Suite: c.Suite, Mirror: config.NormalizeMirror(c.Mirror),
			Packages: append([]string{}, c.Packages...), KernelPackage: c.KernelPackage,
			DiskSize: c.DiskSize, Formats: append([]string{}, c.Formats...), SourceDateEpoch: c.Epoch,
			AgentSHA256: a.in.AgentSHA256, DebugUnverifiedUSR: a.in.DebugUnverifiedUSR,
		},
		KernelVersion: a.in.KernelVersion,
		SecureBoot:    a.secureBootRecord(),
		BootLoaders:   manifestBootLoaders(a.in.BootLoaders),
		KernelCmdline: map[string]string{"a": bootloader.KernelArgs(a.params, "a"), "b": bootloader.KernelArgs(a.params, "b")},
		Disk:          manifest.Disk{Size: a.table.DiskSize, SectorSize: layout.SectorSize, GUID: a.table.DiskGUID},
	}
	fsInfo := map[string][2]string{
		layout.LabelESP:  {"vfat", a.espSerial},
		layout.LabelUSRA: {"squashfs", ""},
		layout.LabelOEM:  {"ext4", strings.ToLower(a.fsUUID(layout.LabelOEM))},
		layout.LabelRoot: {"ext4", strings.ToLower(a.fsUUID(layout.LabelRoot))},
	}
	emptySum := sha256.Sum256(nil)
	for _, p := range a.table.Partitions {
		mp := manifest.Partition{Partition: p, Attributes: fmt.Sprintf("%016X", a.attrs[p.Label]),
			Filesystem: fsInfo[p.Label][0], FSUUID: fsInfo[p.Label][1], ContentSHA256: hex.EncodeToString(emptySum[:])}
		for _, wr := range a.written {
			if wr.Label == p.Label {
				mp.ContentSize, mp.ContentSHA256 = wr.Size, wr.SHA256
			}
		}
		if p.Label == layout.LabelUSRA {
			v := a.usrVerity
			mp.Verity = &manifest.Verity{Algorithm: "sha256", BlockSize: verity.BlockSize, DataSize: v.DataSize,
				HashOffset: v.DataSize, Salt: v.Salt, RootHash: v.RootHash}
		}
		m.Disk.Partitions = append(m.Disk.Partitions, mp)
	}
	a.m = m
	rh := <-a.rawHash
	a.rawHash = nil
	if rh.err != nil {
		return "", rh.err
	}
	if wantsRaw(c.Formats) {
		m.Artifacts = append(m.Artifacts, manifest.Artifact{Name: RawName, Format: "raw", Size: rh.size, SHA256: rh.sum})
	}
	if q, ok := a.artifacts[Qcow2Name]; ok {
		n, sum, err := manifest.HashFile(q)
		if err != nil {
			return "", err
		}
		m.Artifacts = append(m.Artifacts, manifest.Artifact{Name: Qcow2Name, Format: "qcow2", Size: n, SHA256: sum})
	}
	return fmt.Sprintf("%d artifacts", len(m.Artifacts)), nil
}

// writeManifest writes pith.manifest.json beside the artifacts.
func (a *assembly) writeManifest() error {
	b, err := a.m.Encode()
	if err != nil {
		return err
	}
	if err := os.WriteFile(a.w(manifest.FileName), b, 0o644); err != nil {
		return err
	}
	a.artifacts[manifest.FileName] = a.w(manifest.FileName)
	return nil
}

// allocated is the bytes a (sparse) file really occupies.
func allocated(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// rate formats a throughput.
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		d = time.Millisecond
	}
	return layout.Human(int64(float64(n)/d.Seconds())) + "/s"
}

// Allocated is exported for the summary and the benchmark.
func Allocated(path string) int64 { return allocated(path) }

// explain turns low-level write failures into the one-line errors users
// need, naming the fix. External tools (mksquashfs, qemu-img, mkfs) report
// a full disk only in their own words, so an almost full output filesystem
// after a failure is taken as the cause too.
func explain(err error, outDir string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || checkFree(outDir, 64*layout.MiB) != nil {
		return fmt.Errorf("no space left on the device holding %s (a build needs about %s free there): free space or choose another --out", outDir, layout.Human(MinFree))
	}
	return err
}
