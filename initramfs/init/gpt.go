package pithinit

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// GUID is a GPT GUID in its on-disk (mixed-endian) byte order.
type GUID [16]byte

// ParseGUID parses the textual form (8-4-4-4-12 hex digits, any case).
func ParseGUID(s string) (GUID, error) {
	var g GUID
	parts := strings.Split(s, "-")
	if len(parts) != 5 || len(parts[0]) != 8 || len(parts[1]) != 4 || len(parts[2]) != 4 || len(parts[3]) != 4 || len(parts[4]) != 12 {
		return g, fmt.Errorf("%q is not a GUID (want 8-4-4-4-12 hex digits)", s)
	}
	b, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		return g, fmt.Errorf("%q is not a GUID: %v", s, err)
	}
	// The first three fields are stored little-endian.
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g, nil
}

func (g GUID) String() string {
	b := []byte{g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6]}
	b = append(b, g[8:]...)
	h := strings.ToUpper(hex.EncodeToString(b))
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// GPT header fields the init reads or rewrites.
type gptHeader struct {
	raw         []byte // the header sector as read
	CurrentLBA  uint64
	BackupLBA   uint64
	FirstUsable uint64
	LastUsable  uint64
	EntriesLBA  uint64
	NumEntries  uint32
	EntrySize   uint32
}

// Partition is one used GPT entry.
type Partition struct {
	Number     int // 1-based entry index, as the kernel numbers partitions
	Type       GUID
	UUID       GUID
	FirstLBA   uint64
	LastLBA    uint64
	Attributes uint64
	Name       string
}

// Table is a disk's GPT as read from its primary header.
type Table struct {
	SectorSize int64
	hdr        gptHeader
	entries    []byte // the whole entry array
	Partitions []Partition
}

const gptSignature = "EFI PART"

var errNoGPT = errors.New("no GPT")

// ReadGPT reads and checks (signature, CRCs) the primary GPT of a disk.
func ReadGPT(r io.ReaderAt, sectorSize int64) (*Table, error) {
	sec := make([]byte, sectorSize)
	if _, err := r.ReadAt(sec, sectorSize); err != nil {
		return nil, fmt.Errorf("reading GPT header: %w", err)
	}
	h, err := parseHeader(sec)
	if err != nil {
		return nil, err
	}
	if h.EntrySize < 128 || h.NumEntries == 0 || h.NumEntries > 4096 {
		return nil, fmt.Errorf("GPT header: unsupported entry array (%d entries of %d bytes)", h.NumEntries, h.EntrySize)
	}
	entries := make([]byte, int(h.NumEntries)*int(h.EntrySize))
	if _, err := r.ReadAt(entries, int64(h.EntriesLBA)*sectorSize); err != nil {
		return nil, fmt.Errorf("reading GPT entries: %w", err)
	}
	if crc32.ChecksumIEEE(entries) != binary.LittleEndian.Uint32(sec[88:]) {
		return nil, fmt.Errorf("GPT entry array CRC mismatch")
	}
	t := &Table{SectorSize: sectorSize, hdr: h, entries: entries}
	for i := 0; i < int(h.NumEntries); i++ {
		e := entries[i*int(h.EntrySize) : (i+1)*int(h.EntrySize)]
		var p Partition
		copy(p.Type[:], e[0:16])
		if p.Type == (GUID{}) {
			continue
		}
		copy(p.UUID[:], e[16:32])
		p.Number = i + 1
		p.FirstLBA = binary.LittleEndian.Uint64(e[32:])
		p.LastLBA = binary.LittleEndian.Uint64(e[40:])
		p.Attributes = binary.LittleEndian.Uint64(e[48:])
		p.Name = decodeName(e[56:128])
		t.Partitions = append(t.Partitions, p)
	}
	return t, nil
}

func parseHeader(sec []byte) (gptHeader, error) {
	var h gptHeader
	if string(sec[0:8]) != gptSignature {
		return h, errNoGPT
	}
	size := binary.LittleEndian.Uint32(sec[12:])
	if size < 92 || int(size) > len(sec) {
		return h, fmt.Errorf("GPT header size %d is invalid", size)
	}
	c := append([]byte(nil), sec[:size]...)
	binary.LittleEndian.PutUint32(c[16:], 0)
	if crc32.ChecksumIEEE(c) != binary.LittleEndian.Uint32(sec[16:]) {
		return h, fmt.Errorf("GPT header CRC mismatch")
	}
	h.raw = append([]byte(nil), sec...)
	h.CurrentLBA = binary.LittleEndian.Uint64(sec[24:])
	h.BackupLBA = binary.LittleEndian.Uint64(sec[32:])
	h.FirstUsable = binary.LittleEndian.Uint64(sec[40:])
	h.LastUsable = binary.LittleEndian.Uint64(sec[48:])
	h.EntriesLBA = binary.LittleEndian.Uint64(sec[72:])
	h.NumEntries = binary.LittleEndian.Uint32(sec[80:])
	h.EntrySize = binary.LittleEndian.Uint32(sec[84:])
	return h, nil
}

func decodeName(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// Find returns the partition matching a PARTUUID or PARTLABEL spec.
func (t *Table) Find(s Spec) (Partition, bool) {
	for _, p := range t.Partitions {
		switch {
		case s.Kind == "PARTUUID" && strings.EqualFold(p.UUID.String(), s.Value),
			s.Kind == "PARTLABEL" && p.Name == s.Value:
			return p, true
		}
	}
	return Partition{}, false
}

// GrowPlan is what growing a partition to the end of the disk changes.
type GrowPlan struct {
	Number              int
	OldLast, NewLast    uint64 // partition's last LBA
	BackupLBA           uint64 // new backup header LBA (last sector of the disk)
	BackupEntriesLBA    uint64
	LastUsable          uint64
	MovesBackup         bool // the disk grew: the backup GPT moves to its new end
	GrowsPartition      bool
	DiskSectors         uint64
	sectorsForEntries   uint64
	partitionEntryIndex int
}

// growAlign ends the grown partition on a 1 MiB boundary, as partitioning
// tools do, which also makes its size a whole number of filesystem blocks.
const growAlign = 1 << 20

// PlanGrow computes how partition number n grows to fill a disk of
// diskBytes. It only grows the partition that ends last on the disk.
func (t *Table) PlanGrow(n int, diskBytes int64) (*GrowPlan, error) {
	ss := uint64(t.SectorSize)
	sectors := uint64(diskBytes) / ss
	entrySectors := (uint64(t.hdr.NumEntries)*uint64(t.hdr.EntrySize) + ss - 1) / ss
	if sectors < t.hdr.LastUsable+1+entrySectors+1 {
		return nil, fmt.Errorf("disk of %d sectors is smaller than its GPT says (last usable LBA %d)", sectors, t.hdr.LastUsable)
	}
	var target *Partition
	for i := range t.Partitions {
		p := &t.Partitions[i]
		if p.Number == n {
			target = p
		}
	}
	if target == nil {
		return nil, fmt.Errorf("partition %d not in the GPT", n)
	}
	for _, p := range t.Partitions {
		if p.Number != n && p.FirstLBA > target.FirstLBA {
			return nil, fmt.Errorf("partition %d is not the last on the disk (partition %d follows it)", n, p.Number)
		}
	}
	g := &GrowPlan{
		Number:              n,
		OldLast:             target.LastLBA,
		DiskSectors:         sectors,
		BackupLBA:           sectors - 1,
		BackupEntriesLBA:    sectors - 1 - entrySectors,
		sectorsForEntries:   entrySectors,
		partitionEntryIndex: n - 1,
	}
	g.LastUsable = g.BackupEntriesLBA - 1
	g.MovesBackup = g.BackupLBA != t.hdr.BackupLBA
	align := uint64(growAlign) / ss
	if align == 0 {
		align = 1
	}
	size := (g.LastUsable + 1 - target.FirstLBA) / align * align
	g.NewLast = target.FirstLBA + size - 1
	if g.NewLast < target.LastLBA {
		g.NewLast = target.LastLBA
	}
	g.GrowsPartition = g.NewLast > target.LastLBA
	return g, nil
}

// Apply writes the grown GPT (primary and backup headers and entry arrays,
// and the protective MBR's size) to w. The caller re-reads the partition.
func (t *Table) Apply(w io.WriterAt, g *GrowPlan) error {
	ss := t.SectorSize
	entries := append([]byte(nil), t.entries...)
	e := entries[g.partitionEntryIndex*int(t.hdr.EntrySize):]
	binary.LittleEndian.PutUint64(e[40:], g.NewLast)
	entriesCRC := crc32.ChecksumIEEE(entries)

	primary := t.hdr.raw
	hsize := binary.LittleEndian.Uint32(primary[12:])
	mk := func(current, backup, entriesLBA uint64) []byte {
		h := append([]byte(nil), primary...)
		binary.LittleEndian.PutUint64(h[24:], current)
		binary.LittleEndian.PutUint64(h[32:], backup)
		binary.LittleEndian.PutUint64(h[48:], g.LastUsable)
		binary.LittleEndian.PutUint64(h[72:], entriesLBA)
		binary.LittleEndian.PutUint32(h[88:], entriesCRC)
		binary.LittleEndian.PutUint32(h[16:], 0)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hsize]))
		return h
	}
	// Backup first: if the write is cut short the primary still describes
	// the old, consistent layout.
	if _, err := w.WriteAt(entries, int64(g.BackupEntriesLBA)*ss); err != nil {
		return fmt.Errorf("writing backup GPT entries: %w", err)
	}
	if _, err := w.WriteAt(mk(g.BackupLBA, 1, g.BackupEntriesLBA), int64(g.BackupLBA)*ss); err != nil {
		return fmt.Errorf("writing backup GPT header: %w", err)
	}
	if _, err := w.WriteAt(entries, int64(t.hdr.EntriesLBA)*ss); err != nil {
		return fmt.Errorf("writing GPT entries: %w", err)
	}
	if _, err := w.WriteAt(mk(1, g.BackupLBA, t.hdr.EntriesLBA), ss); err != nil {
		return fmt.Errorf("writing GPT header: %w", err)
	}
	return t.fixProtectiveMBR(w, g.DiskSectors)
}

// fixProtectiveMBR updates the 0xEE entry's size to cover the grown disk.
func (t *Table) fixProtectiveMBR(w io.WriterAt, sectors uint64) error {
	ra, ok := w.(io.ReaderAt)
	if !ok {
		return nil
	}
	mbr := make([]byte, 512)
	if _, err := ra.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("reading protective MBR: %w", err)
	}
	if !bytes.Equal(mbr[510:512], []byte{0x55, 0xAA}) {
		return nil
	}
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i : 446+16*(i+1)]
		if e[4] != 0xEE {
			continue
		}
		size := sectors - 1
		if size > 0xFFFFFFFF {
			size = 0xFFFFFFFF
		}
		binary.LittleEndian.PutUint32(e[12:], uint32(size))
		if _, err := w.WriteAt(e, int64(446+16*i)); err != nil {
			return fmt.Errorf("writing protective MBR: %w", err)
		}
	}
	return nil
}
