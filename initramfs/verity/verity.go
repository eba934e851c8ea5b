// Package verity writes and reads dm-verity hash trees in veritysetup's
// on-disk format (superblock version 1, hash type 1, SHA-256, 4 KiB
// blocks), so USR can be verified by the kernel at boot.
//
// Pith's convention: the USR partition holds the read-only filesystem,
// then, at the first 4 KiB boundary after the filesystem's own size (the
// squashfs superblock's bytes_used, or erofs' block count), the verity
// superblock followed by the hash tree. The root hash goes on the kernel
// command line as pith.usrhash=. The image builder calls Format, the init
// Find and Setup, the update agent Find and Verify on a slot it wrote.
package verity

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// BlockSize is the data and hash block size Pith uses.
const BlockSize = 4096

const (
	sbMagic   = "verity\x00\x00"
	sbSize    = 512
	algorithm = "sha256"
)

// Superblock is veritysetup's on-disk header.
type Superblock struct {
	Version       uint32
	HashType      uint32
	UUID          [16]byte
	Algorithm     string
	DataBlockSize uint32
	HashBlockSize uint32
	DataBlocks    uint64
	Salt          []byte
}

func (s *Superblock) marshal() []byte {
	b := make([]byte, sbSize)
	copy(b, sbMagic)
	le := binary.LittleEndian
	le.PutUint32(b[8:], s.Version)
	le.PutUint32(b[12:], s.HashType)
	copy(b[16:32], s.UUID[:])
	copy(b[32:64], s.Algorithm)
	le.PutUint32(b[64:], s.DataBlockSize)
	le.PutUint32(b[68:], s.HashBlockSize)
	le.PutUint64(b[72:], s.DataBlocks)
	le.PutUint16(b[80:], uint16(len(s.Salt)))
	copy(b[88:], s.Salt)
	return b
}

// ReadSuperblock parses the superblock at off and checks it describes a
// tree this package (and the init) handles.
func ReadSuperblock(r io.ReaderAt, off int64) (*Superblock, error) {
	b := make([]byte, sbSize)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("reading verity superblock at %d: %w", off, err)
	}
	if string(b[:8]) != sbMagic {
		return nil, fmt.Errorf("no verity superblock at offset %d", off)
	}
	le := binary.LittleEndian
	s := &Superblock{
		Version:       le.Uint32(b[8:]),
		HashType:      le.Uint32(b[12:]),
		Algorithm:     string(bytes.TrimRight(b[32:64], "\x00")),
		DataBlockSize: le.Uint32(b[64:]),
		HashBlockSize: le.Uint32(b[68:]),
		DataBlocks:    le.Uint64(b[72:]),
	}
	copy(s.UUID[:], b[16:32])
	n := le.Uint16(b[80:])
	if n > 256 {
		return nil, fmt.Errorf("verity superblock: salt of %d bytes", n)
	}
	s.Salt = append([]byte(nil), b[88:88+int(n)]...)
	if s.Version != 1 || s.HashType != 1 || s.Algorithm != algorithm || s.DataBlockSize != BlockSize || s.HashBlockSize != BlockSize {
		return nil, fmt.Errorf("verity superblock: unsupported format (version %d, hash type %d, %s, blocks %d/%d); want 1, 1, sha256, 4096/4096",
			s.Version, s.HashType, s.Algorithm, s.DataBlockSize, s.HashBlockSize)
	}
	if s.DataBlocks == 0 || int64(s.DataBlocks)*BlockSize != off {
		return nil, fmt.Errorf("verity superblock at %d describes %d data blocks: they must end where it starts", off, s.DataBlocks)
	}
	return s, nil
}

// levels returns, from the lowest level (hashes of data blocks) up, how
// many hash blocks each level has; the kernel lays them out top level first.
func levels(dataBlocks uint64) []uint64 {
	const perBlock = BlockSize / sha256.Size
	var out []uint64
	n := dataBlocks
	for {
		n = (n + perBlock - 1) / perBlock
		out = append(out, n)
		if n == 1 {
			return out
		}
	}
}

// TreeSize is the bytes Format writes after the data (superblock + tree).
func TreeSize(dataSize int64) int64 {
	var blocks uint64
	for _, n := range levels(uint64(dataSize / BlockSize)) {
		blocks += n
	}
	return BlockSize * int64(1+blocks)
}

func hashBlock(salt, block []byte) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(block)
	return h.Sum(nil)
}

// Format hashes the first dataSize bytes of dev (a multiple of BlockSize)
// and writes the superblock at dataSize and the hash tree after it. It
// returns the root hash for pith.usrhash=.
func Format(dev interface {
	io.ReaderAt
	io.WriterAt
}, dataSize int64, salt []byte, uuid [16]byte) (string, error) {
	if len(salt) > 256 {
		return "", errors.New("verity: salt longer than 256 bytes")
	}
	sb := &Superblock{Version: 1, HashType: 1, UUID: uuid, Algorithm: algorithm,
		DataBlockSize: BlockSize, HashBlockSize: BlockSize, DataBlocks: uint64(dataSize / BlockSize), Salt: salt}
	root, err := tree(dev, dataSize, salt, func(b []byte, off int64) error {
		_, err := dev.WriteAt(b, off)
		return err
	})
	if err != nil {
		return "", err
	}
	if _, err := dev.WriteAt(append(sb.marshal(), make([]byte, BlockSize-sbSize)...), dataSize); err != nil {
		return "", err
	}
	return root, nil
}

// ErrCorrupt means data or hash tree do not match the root hash.
var ErrCorrupt = errors.New("verity: data or hash tree do not match the root hash")

// Verify reads the data and hash tree that Format wrote at the start of r
// (the superblock sb at sb.DataBlocks*BlockSize) and checks every hash
// block and the root against rootHash, as `veritysetup verify` does: a
// device that passes is one the kernel will read without a verity error.
func Verify(r io.ReaderAt, sb *Superblock, rootHash string) error {
	root, err := Check(r, sb)
	if err != nil {
		return err
	}
	if root != strings.ToLower(rootHash) {
		return fmt.Errorf("%w: root hash is %s, want %s", ErrCorrupt, root, rootHash)
	}
	return nil
}

// Check recomputes the hash tree of the data in r, compares it with the
// stored one block by block and returns its root hash.
func Check(r io.ReaderAt, sb *Superblock) (string, error) {
	dataSize := int64(sb.DataBlocks) * BlockSize
	stored := make([]byte, BlockSize)
	return tree(r, dataSize, sb.Salt, func(b []byte, off int64) error {
		if _, err := r.ReadAt(stored, off); err != nil {
			return fmt.Errorf("verity: reading hash block at %d: %w", off, err)
		}
		if !bytes.Equal(stored, b) {
			return fmt.Errorf("%w: hash block at offset %d differs", ErrCorrupt, off)
		}
		return nil
	})
}

// CheckRoot compares rootHash with the hash of the tree's top block, which
// costs one block read: a wrong root hash is then reported before the
// kernel, which restarts the machine on any mismatch, ever reads a block.
func CheckRoot(r io.ReaderAt, sb *Superblock, rootHash string) error {
	top := make([]byte, BlockSize)
	// The top level is the single block right after the superblock.
	if _, err := r.ReadAt(top, int64(sb.DataBlocks+1)*BlockSize); err != nil {
		return fmt.Errorf("verity: reading the top hash block: %w", err)
	}
	if got := hex.EncodeToString(hashBlock(sb.Salt, top)); got != strings.ToLower(rootHash) {
		return fmt.Errorf("%w: the tree's root hash is %s, the expected one %s", ErrCorrupt, got, strings.ToLower(rootHash))
	}
	return nil
}

// tree computes the hash tree of the first dataSize bytes of r, level by
// level from the data up, passing each hash block and its offset (after
// the superblock, top level first as the kernel lays it out) to emit, and
// returns the root hash. Each level is read back from r, so emit must
// have stored (or checked) the level below.
func tree(r io.ReaderAt, dataSize int64, salt []byte, emit func(block []byte, off int64) error) (string, error) {
	if dataSize <= 0 || dataSize%BlockSize != 0 {
		return "", fmt.Errorf("verity: data size %d is not a positive multiple of %d", dataSize, BlockSize)
	}
	if dataSize < 2*BlockSize {
		// One block would need a tree of zero levels; no filesystem is
		// that small.
		return "", fmt.Errorf("verity: data size %d is below two blocks", dataSize)
	}
	lv := levels(uint64(dataSize / BlockSize))
	// Level i starts after the superblock and all levels above it.
	start := make([]int64, len(lv))
	pos := dataSize + BlockSize
	for i := len(lv) - 1; i >= 0; i-- {
		start[i] = pos
		pos += int64(lv[i]) * BlockSize
	}
	// Large reads: one system call per 1 MiB instead of per block.
	const chunk = 256 * BlockSize
	buf := make([]byte, chunk)
	out := make([]byte, 0, BlockSize)
	h := sha256.New()
	srcOff, srcBlocks := int64(0), uint64(dataSize/BlockSize)
	for i := range lv {
		dst := start[i]
		out = out[:0]
		for b := uint64(0); b < srcBlocks; {
			n := min(srcBlocks-b, chunk/BlockSize)
			if _, err := r.ReadAt(buf[:n*BlockSize], srcOff+int64(b)*BlockSize); err != nil {
				return "", fmt.Errorf("verity: reading block %d: %w", b, err)
			}
			for j := uint64(0); j < n; j++ {
				h.Reset()
				h.Write(salt)
				h.Write(buf[j*BlockSize : (j+1)*BlockSize])
				out = h.Sum(out)
				if len(out) == BlockSize {
					if err := emit(out, dst); err != nil {
						return "", err
					}
					dst += BlockSize
					out = out[:0]
				}
			}
			b += n
		}
		if len(out) > 0 {
			out = append(out, make([]byte, BlockSize-len(out))...)
			if err := emit(out, dst); err != nil {
				return "", err
			}
		}
		srcOff, srcBlocks = start[i], lv[i]
	}
	top := make([]byte, BlockSize)
	if _, err := r.ReadAt(top, start[len(lv)-1]); err != nil {
		return "", err
	}
	return hex.EncodeToString(hashBlock(salt, top)), nil
}

// Table is the device-mapper "verity" target line for a device holding
// data and tree as Format lays them out.
func Table(dev string, sb *Superblock, rootHash string) string {
	salt := "-"
	if len(sb.Salt) > 0 {
		salt = hex.EncodeToString(sb.Salt)
	}
	hashStart := sb.DataBlocks + 1 // the superblock takes one hash block
	// restart_on_corruption: a block that fails its hash restarts the
	// machine instead of returning EIO, so corrupted code never runs and
	// the boot loader's boot counting can fall back to the other slot.
	return fmt.Sprintf("1 %s %s %d %d %d %d %s %s %s 1 restart_on_corruption", dev, dev, sb.DataBlockSize, sb.HashBlockSize,
		sb.DataBlocks, hashStart, sb.Algorithm, rootHash, salt)
}

// Find returns the superblock Format wrote after the squashfs or erofs
// filesystem at the start of r.
func Find(r io.ReaderAt) (*Superblock, error) {
	end, err := FSEnd(r)
	if err != nil {
		return nil, err
	}
	sb, err := ReadSuperblock(r, end)
	if err != nil {
		return nil, fmt.Errorf("%w (no hash tree after the filesystem: an image built without verity?)", err)
	}
	return sb, nil
}

// FSEnd returns where the read-only filesystem at the start of r ends,
// rounded up to BlockSize: where Pith puts the verity superblock.
func FSEnd(r io.ReaderAt) (int64, error) {
	b := make([]byte, 2048)
	if _, err := r.ReadAt(b, 0); err != nil {
		return 0, err
	}
	var size int64
	switch {
	case string(b[0:4]) == "hsqs":
		size = int64(binary.LittleEndian.Uint64(b[40:])) // bytes_used
	case binary.LittleEndian.Uint32(b[1024:]) == 0xE0F5E1E2: // erofs
		blkszbits := b[1024+12]
		size = int64(binary.LittleEndian.Uint32(b[1024+36:])) << blkszbits
	default:
		return 0, errors.New("no squashfs or erofs filesystem")
	}
	return (size + BlockSize - 1) / BlockSize * BlockSize, nil
}
