// Package layout computes Pith's GPT disk layout: partition numbers, labels,
// type GUIDs, 1 MiB-aligned offsets and sizes, and the deterministic GUIDs and
// filesystem UUIDs derived from a build's inputs (same inputs, same IDs).
package layout

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Sizes and geometry.
const (
	SectorSize = 512
	KiB        = int64(1) << 10
	MiB        = int64(1) << 20
	GiB        = int64(1) << 30
	// Align is the alignment of every partition's start and size.
	Align = MiB
	// gptTailBytes is what the backup GPT needs at the end of the disk:
	// 32 sectors of partition entries (128 x 128 bytes) and one header.
	gptTailBytes = 33 * SectorSize
	// DefaultDiskSize is the image's size when the config names none.
	DefaultDiskSize = 4 * GiB
	// MinRootSize is the smallest ROOT partition we accept: ROOT holds /etc,
	// /var and the container store, and is grown on first boot anyway.
	MinRootSize = 256 * MiB
)

// Partition type GUIDs (as printed by sgdisk).
const (
	TypeESP      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeBIOSBoot = "21686148-6449-6E6F-744E-656564454649"
	TypeUSR      = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6" // CoreOS /usr
	TypeLinux    = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	TypeRoot     = "3884DD41-8582-4404-B9A8-E9B84F2DF50E" // CoreOS resizable root
)

// Partition labels, also the names the rest of Pith finds partitions by.
const (
	LabelESP      = "EFI-SYSTEM"
	LabelBIOSBoot = "BIOS-BOOT"
	LabelUSRA     = "USR-A"
	LabelUSRB     = "USR-B"
	LabelOEM      = "OEM"
	LabelRoot     = "ROOT"
)

// Spec is one row of the design's partition table. Size 0 means "the rest
// of the disk".
type Spec struct {
	Number int
	Label  string
	Type   string
	Size   int64
}

// Specs is the design's table (DESIGN.md "Disk"), in on-disk order. Numbers
// 5, 7 and 8 stay free, as in CoreOS/Flatcar.
var Specs = []Spec{
	{1, LabelESP, TypeESP, 128 * MiB},
	{2, LabelBIOSBoot, TypeBIOSBoot, 2 * MiB},
	{3, LabelUSRA, TypeUSR, 1 * GiB},
	{4, LabelUSRB, TypeUSR, 1 * GiB},
	{6, LabelOEM, TypeLinux, 128 * MiB},
	{9, LabelRoot, TypeRoot, 0},
}

// Partition is a placed partition.
type Partition struct {
	Number int    `json:"number"`
	Label  string `json:"label"`
	Type   string `json:"type_guid"`
	GUID   string `json:"guid"`   // partition GUID (PARTUUID), upper case
	Start  int64  `json:"offset"` // bytes from the start of the disk
	Size   int64  `json:"size"`   // bytes
}

// FirstLBA is the partition's first sector.
func (p Partition) FirstLBA() uint64 { return uint64(p.Start / SectorSize) }

// LastLBA is the partition's last sector (inclusive, as GPT stores it).
func (p Partition) LastLBA() uint64 { return uint64((p.Start+p.Size)/SectorSize) - 1 }

// Table is a computed layout.
type Table struct {
	DiskSize   int64       `json:"disk_size"`
	DiskGUID   string      `json:"disk_guid"`
	Partitions []Partition `json:"partitions"`
}

// MinDiskSize is the smallest disk that holds the fixed partitions, the
// smallest ROOT and both GPTs.
func MinDiskSize() int64 {
	n := Align // primary GPT + alignment gap before partition 1
	for _, s := range Specs {
		if s.Size == 0 {
			n += MinRootSize
		} else {
			n += s.Size
		}
	}
	// Round the backup GPT up to the alignment so ROOT can end aligned.
	return n + Align
}

// New places the partitions on a disk of diskSize bytes. seed is a string
// naming the build's inputs; all GUIDs derive from it.
func New(diskSize int64, seed string) (*Table, error) {
	if diskSize%SectorSize != 0 {
		return nil, fmt.Errorf("disk size %d is not a multiple of %d-byte sectors: use a size such as 4GiB", diskSize, SectorSize)
	}
	if min := MinDiskSize(); diskSize < min {
		return nil, fmt.Errorf("disk too small for the content: disk.size is %s, at least %s needed: raise disk.size", Human(diskSize), CeilMiB(min))
	}
	t := &Table{DiskSize: diskSize, DiskGUID: DeriveUUID(seed, "disk")}
	off := Align
	// The backup GPT lives in the last 33 sectors; ROOT ends at the last
	// 1 MiB boundary before it.
	end := (diskSize - gptTailBytes) / Align * Align
	for _, s := range Specs {
		size := s.Size
		if size == 0 {
			size = end - off
		}
		t.Partitions = append(t.Partitions, Partition{
			Number: s.Number, Label: s.Label, Type: s.Type,
			GUID:  DeriveUUID(seed, "partition/"+s.Label),
			Start: off, Size: size,
		})
		off += size
	}
	return t, t.validate()
}

// validate checks the invariants the rest of the builder relies on.
func (t *Table) validate() error {
	prevEnd := int64(Align)
	for _, p := range t.Partitions {
		if p.Start%Align != 0 || p.Size%Align != 0 {
			return fmt.Errorf("layout: partition %d (%s) is not 1 MiB aligned", p.Number, p.Label)
		}
		if p.Start < prevEnd || p.Size <= 0 {
			return fmt.Errorf("layout: partition %d (%s) overlaps or is empty", p.Number, p.Label)
		}
		prevEnd = p.Start + p.Size
	}
	if prevEnd > t.DiskSize-gptTailBytes {
		return fmt.Errorf("layout: partitions overlap the backup GPT")
	}
	return nil
}

// ByLabel returns the partition with the given label.
func (t *Table) ByLabel(label string) (Partition, bool) {
	for _, p := range t.Partitions {
		if p.Label == label {
			return p, true
		}
	}
	return Partition{}, false
}

// MustLabel is ByLabel for the labels of Specs, which always exist.
func (t *Table) MustLabel(label string) Partition {
	p, ok := t.ByLabel(label)
	if !ok {
		panic("layout: no partition " + label)
	}
	return p
}

// CheckFits reports the first content that does not fit its partition,
// naming the size needed. content maps labels to content sizes in bytes.
func (t *Table) CheckFits(content map[string]int64) error {
	for _, p := range t.Partitions {
		n, ok := content[p.Label]
		if !ok || n <= p.Size {
			continue
		}
		if p.Label == LabelRoot {
			need := t.DiskSize - p.Size + roundUp(n, Align)
			return fmt.Errorf("disk too small for the content: ROOT needs %s but has %s: set disk.size to at least %s", Human(n), Human(p.Size), CeilMiB(need))
		}
		return fmt.Errorf("%s content is %s, more than its %s partition: remove packages (debian.packages) to shrink it", p.Label, Human(n), Human(p.Size))
	}
	return nil
}

// DeriveUUID returns a name-based (version 5) UUID for name within the
// build identified by seed, in upper case as GPT tools print it.
func DeriveUUID(seed, name string) string {
	ns := uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://pith-os.org/build/"+seed))
	return strings.ToUpper(uuid.NewSHA1(ns, []byte(name)).String())
}

// DeriveVolumeID returns a 32-bit FAT volume serial derived like DeriveUUID.
func DeriveVolumeID(seed, name string) uint32 {
	h := sha256.Sum256([]byte(seed + "\x00" + name))
	return binary.BigEndian.Uint32(h[:4])
}

// CeilMiB formats n rounded up to whole MiB in the config's syntax
// ("2564MiB"), so a size named in an error is always enough.
func CeilMiB(n int64) string { return fmt.Sprintf("%dMiB", roundUp(n, MiB)/MiB) }

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// Human formats a byte count with binary units, e.g. "1.5 GiB".
func Human(n int64) string {
	switch {
	case n >= GiB:
		return trim(fmt.Sprintf("%.2f", float64(n)/float64(GiB))) + " GiB"
	case n >= MiB:
		return trim(fmt.Sprintf("%.1f", float64(n)/float64(MiB))) + " MiB"
	case n >= KiB:
		return trim(fmt.Sprintf("%.1f", float64(n)/float64(KiB))) + " KiB"
	}
	return fmt.Sprintf("%d B", n)
}

func trim(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
