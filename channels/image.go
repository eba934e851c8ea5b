package channels

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/initramfs/verity"
)

// ImageFile is the raw disk image of an image build that `pith release`
// reads; its manifest is image/manifest's pith.manifest.json.
const ImageFile = "pith.img"

// GPT partition names of the design's layout.
const (
	partESP  = layout.LabelESP
	partUSRA = "USR-A"
)

// ImageRelease is a built image, opened for release.
type ImageRelease struct {
	Path          string
	Version       string
	Platform      string // GOOS/GOARCH of the USR payload
	USRVerityHash string
	// USROffset and USRSize delimit the USR payload inside the image file;
	// USRSHA256 is the builder's hash of it, checked while the payload is
	// compressed.
	USROffset, USRSize int64
	USRSHA256          string
	// HowSized says where USRSize came from, for the release log.
	HowSized string

	disk   *disk.Disk
	espIdx int
}

// OpenImage reads DIR/pith.img and DIR/pith.manifest.json. Partition
// geometry comes from the image's own GPT and must agree with the manifest;
// USR-A's payload is the manifest's content_size bytes (the filesystem), or
// what the squashfs/erofs superblock says for manifests without it.
func OpenImage(dir string) (*ImageRelease, error) {
	imgPath := filepath.Join(dir, ImageFile)
	mfPath := filepath.Join(dir, manifest.FileName)
	im, err := manifest.Read(mfPath)
	if err != nil {
		return nil, fmt.Errorf("image manifest: %w (run `pith build --out %s` first)", err, dir)
	}
	if _, err := os.Stat(imgPath); err != nil {
		return nil, fmt.Errorf("image: %w (run `pith build --out %s` first)", err, dir)
	}
	d, err := diskfs.Open(imgPath, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, fmt.Errorf("image %s: %v", imgPath, err)
	}
	// The image manifest's platform is the OEM platform (qemu, ec2, ...);
	// the USR payload is the same for all of them and differs by
	// architecture only, as in CoreOS.
	ir := &ImageRelease{Path: imgPath, Version: im.Version, Platform: "linux/" + im.Architecture(), disk: d}
	if strings.Contains(im.Platform, "/") {
		ir.Platform = im.Platform
	}
	for _, f := range strings.Fields(im.KernelCmdline["a"]) {
		if v, ok := strings.CutPrefix(f, "pith.usrhash="); ok {
			ir.USRVerityHash = v
		}
	}
	if mp, ok := im.Partition(partUSRA); ok && mp.Verity != nil {
		if ir.USRVerityHash != "" && ir.USRVerityHash != mp.Verity.RootHash {
			return nil, fmt.Errorf("image %s: USR-A's dm-verity root hash is %s in the manifest, %s on slot a's kernel line; rebuild the image", dir, mp.Verity.RootHash, ir.USRVerityHash)
		}
		ir.USRVerityHash = mp.Verity.RootHash
	}
	if ir.USRVerityHash == "" {
		return nil, fmt.Errorf("image %s has no dm-verity root hash for USR-A: its release could not boot on nodes that mount /usr only through dm-verity; rebuild it with this pith", dir)
	}
	if !hexSHA256Re.MatchString(ir.USRVerityHash) {
		return nil, fmt.Errorf("image %s: dm-verity root hash %q is not 64 lowercase hex digits", dir, ir.USRVerityHash)
	}
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("image %s: partition table: %v", imgPath, err)
	}
	table, isGPT := pt.(*gpt.Table)
	if !isGPT {
		return nil, fmt.Errorf("image %s: not a GPT disk", imgPath)
	}
	var usr *gpt.Partition
	for _, p := range table.Partitions {
		switch p.Name {
		case partUSRA:
			usr = p
		case partESP:
			ir.espIdx = p.Index
		}
	}
	if usr == nil || ir.espIdx == 0 {
		return nil, fmt.Errorf("image %s: no %s or %s partition; is it a Pith image?", imgPath, partUSRA, partESP)
	}
	sector := int64(table.LogicalSectorSize)
	if sector == 0 {
		sector = 512
	}
	ir.USROffset = int64(usr.Start) * sector
	partSize := int64(usr.Size)

	mp, found := im.Partition(partUSRA)
	if found && (mp.Start != ir.USROffset || mp.Size != partSize) {
		return nil, fmt.Errorf("image %s: %s at %d (+%d) in the GPT, the manifest says %d (+%d); rebuild the image", imgPath, partUSRA, ir.USROffset, partSize, mp.Start, mp.Size)
	}
	f, err := os.Open(imgPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	switch used, fsName := fsUsedSize(io.NewSectionReader(f, ir.USROffset, partSize)); {
	case found && mp.ContentSize > 0:
		ir.USRSize, ir.USRSHA256, ir.HowSized = mp.ContentSize, mp.ContentSHA256, "image manifest content_size"
	case used > 0:
		// The dm-verity superblock and tree follow the filesystem.
		sb, err := verity.Find(io.NewSectionReader(f, ir.USROffset, partSize))
		if err != nil {
			return nil, fmt.Errorf("image %s: USR-A: %w", imgPath, err)
		}
		data := int64(sb.DataBlocks) * verity.BlockSize
		ir.USRSize, ir.HowSized = data+verity.TreeSize(data), fsName+" superblock + dm-verity tree"
	default:
		return nil, fmt.Errorf("image %s: USR-A holds no squashfs or erofs (the init finds the dm-verity tree after one); is it a Pith image?", imgPath)
	}
	if ir.USRSize > partSize {
		return nil, fmt.Errorf("image %s: USR content of %d bytes exceeds its %d-byte partition", imgPath, ir.USRSize, partSize)
	}
	ok = true
	return ir, nil
}

// Close releases the image.
func (ir *ImageRelease) Close() error { return ir.disk.Close() }

// OpenUSR returns the USR payload: USR-A's used bytes.
func (ir *ImageRelease) OpenUSR() (io.ReadCloser, error) {
	f, err := os.Open(ir.Path)
	if err != nil {
		return nil, err
	}
	var r io.Reader = io.NewSectionReader(f, ir.USROffset, ir.USRSize)
	if ir.USRSHA256 != "" {
		// The partition must still hold what the builder wrote.
		r = newVerifyingReader(r, "USR-A content of "+ir.Path, ir.USRSize, ir.USRSHA256)
	}
	return struct {
		io.Reader
		io.Closer
	}{r, f}, nil
}

// OpenESPFile opens a file on the image's EFI system partition (vfat, read
// with go-diskfs), e.g. pith/vmlinuz-a.
func (ir *ImageRelease) OpenESPFile(name string) (io.ReadCloser, error) {
	fsys, err := ir.disk.GetFilesystem(ir.espIdx)
	if err != nil {
		return nil, fmt.Errorf("image %s: ESP: %v", ir.Path, err)
	}
	f, err := fsys.Open("/" + strings.TrimPrefix(name, "/"))
	if err != nil {
		return nil, fmt.Errorf("image %s: ESP file %s: %v", ir.Path, name, err)
	}
	return f, nil
}

// fsUsedSize returns how many bytes the squashfs or erofs filesystem at the
// start of r occupies, rounded up to 4 KiB, or 0 when it is neither.
func fsUsedSize(r io.ReaderAt) (int64, string) {
	var sb [2048]byte
	if _, err := r.ReadAt(sb[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return 0, ""
	}
	round := func(n int64) int64 { return (n + 4095) &^ 4095 }
	// squashfs: magic "hsqs", bytes_used (le64) at offset 40.
	if string(sb[0:4]) == "hsqs" {
		return round(int64(binary.LittleEndian.Uint64(sb[40:48]))), "squashfs"
	}
	// erofs: superblock at 1024, magic 0xE0F5E1E2, blkszbits at +12,
	// blocks (le32) at +36.
	if binary.LittleEndian.Uint32(sb[1024:1028]) == 0xE0F5E1E2 {
		bits := sb[1024+12]
		blocks := int64(binary.LittleEndian.Uint32(sb[1024+36 : 1024+40]))
		if bits >= 9 && bits <= 16 && blocks > 0 {
			return round(blocks << bits), "erofs"
		}
	}
	return 0, ""
}
