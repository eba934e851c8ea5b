// Package manifest describes a built Pith image in pith.manifest.json: the
// version and build inputs, the partition table with GUIDs, offsets and
// content hashes, and the artifacts' sizes and SHA-256. It holds no
// timestamps or host details, so equal builds give equal manifests.
package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/pith-os/pith/image/layout"
)

// FileName is the manifest's name in the output directory.
const FileName = "pith.manifest.json"

// SchemaVersion changes when fields change meaning.
const SchemaVersion = 1

// Manifest is the content of pith.manifest.json.
type Manifest struct {
	Schema   int    `json:"schema"`
	Version  string `json:"version"`
	Platform string `json:"platform"`
	// Arch is the machine architecture (amd64, arm64); manifests of images
	// built before it existed are amd64 (see Architecture).
	Arch          string            `json:"arch,omitempty"`
	Inputs        Inputs            `json:"inputs"`
	KernelVersion string            `json:"kernel_version"`
	KernelCmdline map[string]string `json:"kernel_cmdline"` // slot -> command line
	Disk          Disk              `json:"disk"`
	Artifacts     []Artifact        `json:"artifacts"`
	// SBOM is the SPDX document of the image's content (pith.spdx.json).
	SBOM *Artifact `json:"sbom,omitempty"`
	// SecureBoot is set when the UEFI boot chain is signed.
	SecureBoot *SecureBoot `json:"secure_boot,omitempty"`
	// BootLoaders are the GRUBs of the boot paths (BIOS, then UEFI); absent
	// from manifests of images built before they were recorded.
	BootLoaders []BootLoader `json:"boot_loaders,omitempty"`
	// Packages are the versions of the Debian packages installed (name ->
	// version), the kernel's package included.
	Packages map[string]string `json:"debian_package_versions,omitempty"`
}

// Architecture is the image's machine architecture: Arch, or amd64 for a
// manifest written before images named theirs.
func (m *Manifest) Architecture() string {
	if m.Arch == "" {
		return "amd64"
	}
	return m.Arch
}

// BootLoader is the GRUB one boot path starts: its version and the Debian
// packages its image was made from (the SBOM has their checksums).
type BootLoader struct {
	Boot     string        `json:"boot"`         // bios or uefi
	File     string        `json:"file"`         // where the disk holds the GRUB image
	Version  string        `json:"grub_version"` // Debian's version of its modules
	Packages []BootPackage `json:"packages"`     // modules, then grub-mkimage
}

// BootPackage is a Debian package a boot loader was made from.
type BootPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	// Origin is the Debian archive it was downloaded from
	// (bookworm-backports) or "build host" (the builder's installed one).
	Origin string `json:"origin"`
}

// SecureBoot names the keys an image's UEFI boot chain is signed for.
type SecureBoot struct {
	// Certs: PK, KEK, db -> SHA-256 of the certificate (DER).
	Certs map[string]string `json:"certs_sha256"`
}

// Inputs are the build inputs (the resolved config).
type Inputs struct {
	ConfigHash      string   `json:"config_hash"`
	Suite           string   `json:"debian_suite"`
	Mirror          string   `json:"debian_mirror"`
	Suites          []string `json:"debian_suites,omitempty"` // archive suites installed from
	SecurityMirror  string   `json:"debian_security_mirror,omitempty"`
	Packages        []string `json:"debian_packages"`
	KernelPackage   string   `json:"debian_kernel"`
	DiskSize        int64    `json:"disk_size"`
	Formats         []string `json:"formats"`
	SourceDateEpoch int64    `json:"source_date_epoch"`
	AgentSHA256     string   `json:"agent_sha256,omitempty"` // of pithd+pithctl as installed
	// DebugUnverifiedUSR: the initramfs lets pith.verity=off skip dm-verity.
	DebugUnverifiedUSR bool `json:"debug_unverified_usr,omitempty"`
}

// Disk is the partition table.
type Disk struct {
	Size       int64       `json:"size"`
	SectorSize int         `json:"sector_size"`
	GUID       string      `json:"guid"`
	Partitions []Partition `json:"partitions"`
}

// Partition is one GPT entry and what the builder put in it.
type Partition struct {
	layout.Partition
	Attributes string `json:"attributes"` // GPT attribute word, hex as sgdisk prints it
	Filesystem string `json:"filesystem,omitempty"`
	FSUUID     string `json:"fs_uuid,omitempty"`
	// ContentSize and ContentSHA256 cover the first ContentSize bytes of
	// the partition (the filesystem image written there); empty partitions
	// have size 0.
	ContentSize   int64  `json:"content_size"`
	ContentSHA256 string `json:"content_sha256"`
	// Verity describes the dm-verity hash tree inside the content (USR).
	Verity *Verity `json:"verity,omitempty"`
}

// Verity is a dm-verity hash tree in veritysetup's format (superblock at
// HashOffset, then the tree) over the first DataSize bytes: what
// `veritysetup verify DEV DEV ROOT --hash-offset=HashOffset` checks.
type Verity struct {
	Algorithm  string `json:"algorithm"`
	BlockSize  int    `json:"block_size"`
	DataSize   int64  `json:"data_size"`
	HashOffset int64  `json:"hash_offset"`
	Salt       string `json:"salt"`
	RootHash   string `json:"root_hash"`
}

// Artifact is one output file.
type Artifact struct {
	Name   string `json:"name"`
	Format string `json:"format"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Encode renders the manifest as indented JSON with a final newline.
func (m *Manifest) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Read loads a manifest.
func Read(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if m.Schema != SchemaVersion {
		return nil, fmt.Errorf("%s: manifest schema %d, this pith reads %d", path, m.Schema, SchemaVersion)
	}
	return &m, nil
}

// Partition returns the partition with the given label.
func (m *Manifest) Partition(label string) (Partition, bool) {
	for _, p := range m.Disk.Partitions {
		if p.Label == label {
			return p, true
		}
	}
	return Partition{}, false
}

// HashFile returns a file's size and SHA-256 (hex). Holes of a sparse file
// are hashed as zeros without reading them, so a 4 GiB raw image costs only
// its allocated bytes in I/O.
func HashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	size := st.Size()
	h := sha256.New()
	var off int64
	for off < size {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			data = size // only a hole remains
		} else if err != nil {
			// No SEEK_DATA support: read everything.
			if _, err := io.Copy(h, io.NewSectionReader(f, off, size-off)); err != nil {
				return 0, "", err
			}
			break
		}
		if err := hashZeros(h, data-off); err != nil {
			return 0, "", err
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if _, err := io.Copy(h, io.NewSectionReader(f, data, hole-data)); err != nil {
			return 0, "", err
		}
		off = hole
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

var zeros = make([]byte, 1<<20)

func hashZeros(w io.Writer, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
