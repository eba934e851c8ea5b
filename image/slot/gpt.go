package slot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"unicode/utf16"
)

// Prio is the CoreOS "gptprio" view of a USR partition's GPT attribute bits:
// priority (bits 48-51), tries left (52-55) and successful (56).
type Prio struct {
	Priority   int  `json:"priority"`
	Tries      int  `json:"tries"`
	Successful bool `json:"successful"`
}

const (
	prioShift      = 48
	triesShift     = 52
	successfulBit  = 56
	nibble         = 0xf
	prioFieldsMask = uint64(0x1ff) << prioShift
)

// DecodePrio extracts the gptprio fields from a GPT attribute word.
func DecodePrio(attr uint64) Prio {
	return Prio{
		Priority:   int(attr >> prioShift & nibble),
		Tries:      int(attr >> triesShift & nibble),
		Successful: attr>>successfulBit&1 == 1,
	}
}

// Apply returns attr with the gptprio fields replaced by p; other bits
// (e.g. bit 0 "required", bit 2 "legacy BIOS bootable") are kept.
func (p Prio) Apply(attr uint64) (uint64, error) {
	if p.Priority < 0 || p.Priority > 15 || p.Tries < 0 || p.Tries > 15 {
		return 0, fmt.Errorf("gptprio priority %d / tries %d out of range 0-15", p.Priority, p.Tries)
	}
	attr &^= prioFieldsMask
	attr |= uint64(p.Priority) << prioShift
	attr |= uint64(p.Tries) << triesShift
	if p.Successful {
		attr |= 1 << successfulBit
	}
	return attr, nil
}

// gptEntry is one partition entry as found on disk.
type gptEntry struct {
	index int // 1-based partition number
	guid  string
	name  string
	attr  uint64
}

// gptSide is one copy (primary or backup) of the GPT.
type gptSide struct {
	headerLBA  int64
	header     []byte // one sector
	entriesLBA int64
	entries    []byte
	entrySize  int
}

var errNoGPT = errors.New("no GPT found")

func readSide(f *os.File, ss int64, lba int64) (*gptSide, error) {
	h := make([]byte, ss)
	if _, err := f.ReadAt(h, lba*ss); err != nil {
		return nil, err
	}
	if !bytes.Equal(h[:8], []byte("EFI PART")) {
		return nil, errNoGPT
	}
	hsize := binary.LittleEndian.Uint32(h[12:16])
	if hsize < 92 || int64(hsize) > ss {
		return nil, fmt.Errorf("GPT header at LBA %d has bad size %d", lba, hsize)
	}
	want := binary.LittleEndian.Uint32(h[16:20])
	tmp := append([]byte(nil), h[:hsize]...)
	binary.LittleEndian.PutUint32(tmp[16:20], 0)
	if crc32.ChecksumIEEE(tmp) != want {
		return nil, fmt.Errorf("GPT header at LBA %d: checksum mismatch", lba)
	}
	s := &gptSide{
		headerLBA:  lba,
		header:     h,
		entriesLBA: int64(binary.LittleEndian.Uint64(h[72:80])),
		entrySize:  int(binary.LittleEndian.Uint32(h[84:88])),
	}
	n := int(binary.LittleEndian.Uint32(h[80:84]))
	if s.entrySize < 128 || n <= 0 || n > 1024 {
		return nil, fmt.Errorf("GPT header at LBA %d: unsupported entry array (%d x %d)", lba, n, s.entrySize)
	}
	s.entries = make([]byte, n*s.entrySize)
	if _, err := f.ReadAt(s.entries, s.entriesLBA*ss); err != nil {
		return nil, err
	}
	if crc32.ChecksumIEEE(s.entries) != binary.LittleEndian.Uint32(h[88:92]) {
		return nil, fmt.Errorf("GPT at LBA %d: partition entries checksum mismatch", lba)
	}
	return s, nil
}

func (s *gptSide) list() []gptEntry {
	var out []gptEntry
	for i := 0; i*s.entrySize < len(s.entries); i++ {
		e := s.entries[i*s.entrySize : (i+1)*s.entrySize]
		if bytes.Equal(e[:16], make([]byte, 16)) {
			continue
		}
		u := make([]uint16, 36)
		for j := range u {
			u[j] = binary.LittleEndian.Uint16(e[56+2*j:])
		}
		name := utf16.Decode(u)
		for k, r := range name {
			if r == 0 {
				name = name[:k]
				break
			}
		}
		out = append(out, gptEntry{index: i + 1, guid: guidString(e[16:32]), name: string(name), attr: binary.LittleEndian.Uint64(e[48:56])})
	}
	return out
}

func (s *gptSide) setAttr(index int, attr uint64) {
	binary.LittleEndian.PutUint64(s.entries[(index-1)*s.entrySize+48:], attr)
	binary.LittleEndian.PutUint32(s.header[88:92], crc32.ChecksumIEEE(s.entries))
	hsize := binary.LittleEndian.Uint32(s.header[12:16])
	binary.LittleEndian.PutUint32(s.header[16:20], 0)
	binary.LittleEndian.PutUint32(s.header[16:20], crc32.ChecksumIEEE(s.header[:hsize]))
}

func (s *gptSide) write(f *os.File, ss int64) error {
	if _, err := f.WriteAt(s.entries, s.entriesLBA*ss); err != nil {
		return err
	}
	_, err := f.WriteAt(s.header, s.headerLBA*ss)
	return err
}

// guidString formats GPT's mixed-endian GUID bytes the way sgdisk prints them.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

// openGPT reads both copies of the GPT of an image file or block device,
// probing 512- and 4096-byte logical sectors.
func openGPT(f *os.File) (ss int64, primary, backup *gptSide, err error) {
	for _, ss = range []int64{512, 4096} {
		primary, err = readSide(f, ss, 1)
		if errors.Is(err, errNoGPT) {
			continue
		}
		if err != nil {
			return 0, nil, nil, err
		}
		alt := int64(binary.LittleEndian.Uint64(primary.header[32:40]))
		backup, err = readSide(f, ss, alt)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("backup GPT: %w (repair it with sgdisk -e)", err)
		}
		return ss, primary, backup, nil
	}
	return 0, nil, nil, errNoGPT
}
