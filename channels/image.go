package channels

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// Files of an image build that `pith release` reads.
const (
	ImageFile         = "pith.img"
	ImageManifestFile = "pith.manifest.json"
)

// GPT partition names of the design's layout.
const (
	partESP  = "EFI-SYSTEM"
	partUSRA = "USR-A"
)

// ImageManifest is the part of the image build's pith.manifest.json that a
// release needs. Partition geometry comes from the image's own GPT; the
// manifest's partition list, when present, is cross-checked against it and
// may give the used size of USR-A's filesystem (content_size), which
// otherwise is read from the squashfs/erofs superblock.
type ImageManifest struct {
	Version string `json:"version"`
	// Platform (GOOS/GOARCH) or Arch (GOARCH); default linux/amd64.
	Platform string `json:"platform"`
	Arch     string `json:"arch"`
	// USRVerityHash: dm-verity root hash of USR-A when the build made one.
	USRVerityHash string              `json:"usr_verity_hash"`
	Partitions    []ImageManifestPart `json:"partitions"`
}

// ImageManifestPart is one partition in the image manifest.
type ImageManifestPart struct {
	Number int    `json:"number"`
	Label  string `json:"label"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	// ContentSize is how many bytes at the partition's start belong to its
	// filesystem (plus verity hash tree, if stored after it).
	ContentSize int64 `json:"content_size"`
}

// ImageRelease is a built image, opened for release.
type ImageRelease struct {
	Path          string
	Version       string
	Platform      string
	USRVerityHash string
	// USROffset and USRSize delimit the USR payload inside the image file.
	USROffset, USRSize int64
	// HowSized says where USRSize came from, for the release log.
	HowSized string

	disk   *disk.Disk
	espIdx int
}

// OpenImage reads DIR/pith.img and DIR/pith.manifest.json.
func OpenImage(dir string) (*ImageRelease, error) {
	imgPath := filepath.Join(dir, ImageFile)
	mfPath := filepath.Join(dir, ImageManifestFile)
	var im ImageManifest
	data, err := os.ReadFile(mfPath)
	if err != nil {
		return nil, fmt.Errorf("image manifest: %w (run `pith build --out %s` first)", err, dir)
	}
	if err := json.Unmarshal(data, &im); err != nil {
		return nil, fmt.Errorf("image manifest %s: %v", mfPath, err)
	}
	if _, err := os.Stat(imgPath); err != nil {
		return nil, fmt.Errorf("image: %w (run `pith build --out %s` first)", err, dir)
	}
	d, err := diskfs.Open(imgPath, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, fmt.Errorf("image %s: %v", imgPath, err)
	}
	ir := &ImageRelease{Path: imgPath, Version: im.Version, USRVerityHash: im.USRVerityHash, disk: d}
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	switch {
	case im.Platform != "":
		ir.Platform = im.Platform
	case im.Arch != "":
		ir.Platform = "linux/" + im.Arch
	default:
		ir.Platform = "linux/" + runtime.GOARCH
	}
	pt, err := d.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("image %s: partition table: %v", imgPath, err)
	}
	table, isGPT := pt.(*gpt.Table)
	if !isGPT {
		return nil, fmt.Errorf("image %s: not a GPT disk", imgPath)
	}
	var usr *gpt.Partition
	for i, p := range table.Partitions {
		switch p.Name {
		case partUSRA:
			usr = p
		case partESP:
			ir.espIdx = i + 1
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

	var mp *ImageManifestPart
	for i := range im.Partitions {
		if strings.EqualFold(im.Partitions[i].Label, partUSRA) {
			mp = &im.Partitions[i]
		}
	}
	if mp != nil && mp.Offset != 0 && (mp.Offset != ir.USROffset || (mp.Size != 0 && mp.Size != partSize)) {
		return nil, fmt.Errorf("image %s: %s at %d (+%d) in the GPT, the manifest says %d (+%d); rebuild the image", imgPath, partUSRA, ir.USROffset, partSize, mp.Offset, mp.Size)
	}
	f, err := os.Open(imgPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	switch used, fsName := fsUsedSize(io.NewSectionReader(f, ir.USROffset, partSize)); {
	case mp != nil && mp.ContentSize > 0:
		ir.USRSize, ir.HowSized = mp.ContentSize, "image manifest content_size"
	case ir.USRVerityHash != "":
		// A verity hash tree may follow the filesystem: ship it all.
		ir.USRSize, ir.HowSized = partSize, "whole partition (verity)"
	case used > 0:
		ir.USRSize, ir.HowSized = used, fsName+" superblock"
	default:
		ir.USRSize, ir.HowSized = partSize, "whole partition (filesystem not recognised)"
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
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, ir.USROffset, ir.USRSize), f}, nil
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
