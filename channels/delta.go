package channels

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// Delta payloads carry a new USR as references into the previous release's
// USR (which the node has on its running slot) plus the bytes that are new.
// Both sides cut their content into chunks at content-defined boundaries
// (a rolling "gear" hash), so an insertion early in the image shifts the
// data after it without changing the chunks: only chunks around the change
// travel.
//
// A delta file is zstd-compressed; inside: the magic, then operations
// until the end marker:
//
//	'C' u64 base offset, u32 length   copy from the base
//	'D' u32 length, bytes             literal data
//	'E'                               end
const deltaMagic = "PITHDLT1"

// PayloadUSRDelta is the name of a USR delta payload.
const PayloadUSRDelta = "usr-delta"

const (
	chunkMin  = 16 << 10
	chunkMask = 1<<16 - 1 // ~64 KiB average
	chunkMax  = 256 << 10
)

// gear is the rolling hash's table: 256 pseudo-random words, derived from
// SHA-256 so they are fixed forever (changing them would only cost
// delta efficiency, never correctness).
var gear = func() (g [256]uint64) {
	for i := range g {
		s := sha256.Sum256([]byte{'p', 'i', 't', 'h', byte(i)})
		g[i] = binary.LittleEndian.Uint64(s[:8])
	}
	return
}()

type chunk struct {
	off int64
	n   int
	sum [32]byte
}

// chunks cuts r's content at content-defined boundaries.
func chunks(r io.Reader, visit func(c chunk, data []byte) error) error {
	br := bufio.NewReaderSize(r, 1<<20)
	buf := make([]byte, 0, chunkMax)
	var off int64
	var h uint64
	emit := func() error {
		if len(buf) == 0 {
			return nil
		}
		c := chunk{off: off, n: len(buf), sum: sha256.Sum256(buf)}
		if err := visit(c, buf); err != nil {
			return err
		}
		off += int64(len(buf))
		buf, h = buf[:0], 0
		return nil
	}
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			return emit()
		}
		if err != nil {
			return err
		}
		buf = append(buf, b)
		h = h<<1 + gear[b]
		if (len(buf) >= chunkMin && h&chunkMask == 0) || len(buf) >= chunkMax {
			if err := emit(); err != nil {
				return err
			}
		}
	}
}

// DeltaStats describes a delta built by BuildDelta.
type DeltaStats struct {
	Chunks, Reused int
	Literal        int64 // bytes carried in the delta (before compression)
}

// BuildDelta writes to dst a delta that turns base into target and returns
// the payload (Size/SHA256: the delta file; Uncompressed*: the target's
// content; Base*: base's content).
func BuildDelta(base, target io.Reader, dst string) (Payload, DeltaStats, error) {
	var st DeltaStats
	index := map[[32]byte]chunk{}
	bsum := sha256.New()
	var bsize int64
	err := chunks(io.TeeReader(base, bsum), func(c chunk, _ []byte) error {
		if _, ok := index[c.sum]; !ok {
			index[c.sum] = c
		}
		bsize += int64(c.n)
		return nil
	})
	if err != nil {
		return Payload{}, st, fmt.Errorf("delta base: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
	if err != nil {
		return Payload{}, st, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	defer f.Close()
	zsum, zcount := sha256.New(), &countWriter{}
	enc, err := zstd.NewWriter(io.MultiWriter(f, zsum, zcount), zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(true))
	if err != nil {
		return Payload{}, st, err
	}
	w := bufio.NewWriterSize(enc, 1<<20)
	w.WriteString(deltaMagic)
	var hdr [13]byte
	// Adjacent copies merge into one operation.
	var pendOff int64 = -1
	var pendLen int64
	flush := func() {
		for pendLen > 0 {
			n := min(pendLen, 1<<31)
			hdr[0] = 'C'
			binary.LittleEndian.PutUint64(hdr[1:9], uint64(pendOff))
			binary.LittleEndian.PutUint32(hdr[9:13], uint32(n))
			w.Write(hdr[:13])
			pendOff += n
			pendLen -= n
		}
		pendOff = -1
	}
	tsum := sha256.New()
	var tsize int64
	err = chunks(io.TeeReader(target, tsum), func(c chunk, data []byte) error {
		st.Chunks++
		tsize += int64(c.n)
		if b, ok := index[c.sum]; ok {
			st.Reused++
			if pendOff >= 0 && pendOff+pendLen == b.off {
				pendLen += int64(b.n)
			} else {
				flush()
				pendOff, pendLen = b.off, int64(b.n)
			}
			return nil
		}
		flush()
		st.Literal += int64(len(data))
		hdr[0] = 'D'
		binary.LittleEndian.PutUint32(hdr[1:5], uint32(len(data)))
		w.Write(hdr[:5])
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		enc.Close()
		return Payload{}, st, fmt.Errorf("delta target: %w", err)
	}
	flush()
	w.WriteByte('E')
	if err := w.Flush(); err != nil {
		enc.Close()
		return Payload{}, st, err
	}
	if err := enc.Close(); err != nil {
		return Payload{}, st, err
	}
	if err := publishPayload(f, dst); err != nil {
		return Payload{}, st, err
	}
	return Payload{
		Name: PayloadUSRDelta, Compression: CompressionZstd,
		Size: zcount.n, SHA256: hex.EncodeToString(zsum.Sum(nil)),
		UncompressedSize: tsize, UncompressedSHA256: hex.EncodeToString(tsum.Sum(nil)),
		BaseSize: bsize, BaseSHA256: hex.EncodeToString(bsum.Sum(nil)),
	}, st, nil
}

// ErrBaseMismatch means the running slot does not hold the release a delta
// was made against; fetch the full payload instead.
var ErrBaseMismatch = errors.New("delta base does not match")

// VerifyBase checks that base holds the content p's delta was made from.
func VerifyBase(base io.ReaderAt, p Payload) error {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(base, 0, p.BaseSize)); err != nil {
		return fmt.Errorf("%w: reading the base: %v", ErrBaseMismatch, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.BaseSHA256 {
		return fmt.Errorf("%w: running slot has sha256 %s over %d bytes, the delta needs %s", ErrBaseMismatch, got, p.BaseSize, p.BaseSHA256)
	}
	return nil
}

// deltaReader replays a delta's operations as the target's byte stream.
type deltaReader struct {
	ops  *bufio.Reader
	base io.ReaderAt
	size int64 // base size: copies beyond it are corrupt
	// current operation
	copyOff, left int64
	literal       bool
	done          bool
}

func (d *deltaReader) Read(p []byte) (int, error) {
	for d.left == 0 {
		if d.done {
			return 0, io.EOF
		}
		op, err := d.ops.ReadByte()
		if err != nil {
			return 0, fmt.Errorf("delta: truncated: %w", io.ErrUnexpectedEOF)
		}
		var hdr [12]byte
		switch op {
		case 'C':
			if _, err := io.ReadFull(d.ops, hdr[:12]); err != nil {
				return 0, fmt.Errorf("delta: truncated copy: %w", io.ErrUnexpectedEOF)
			}
			d.copyOff = int64(binary.LittleEndian.Uint64(hdr[:8]))
			d.left = int64(binary.LittleEndian.Uint32(hdr[8:12]))
			d.literal = false
			if d.copyOff < 0 || d.copyOff+d.left > d.size {
				return 0, fmt.Errorf("delta: copy of %d bytes at %d beyond the %d-byte base", d.left, d.copyOff, d.size)
			}
		case 'D':
			if _, err := io.ReadFull(d.ops, hdr[:4]); err != nil {
				return 0, fmt.Errorf("delta: truncated data: %w", io.ErrUnexpectedEOF)
			}
			d.left = int64(binary.LittleEndian.Uint32(hdr[:4]))
			d.literal = true
		case 'E':
			d.done = true
		default:
			return 0, fmt.Errorf("delta: unknown operation %q", op)
		}
	}
	n := int(min(int64(len(p)), d.left))
	var err error
	if d.literal {
		n, err = io.ReadFull(d.ops, p[:n])
		if err != nil {
			return n, fmt.Errorf("delta: truncated data: %w", io.ErrUnexpectedEOF)
		}
	} else {
		want := n
		n, err = d.base.ReadAt(p[:want], d.copyOff)
		if n < want {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("delta: read base at %d: %w", d.copyOff, err)
		}
		d.copyOff += int64(n)
	}
	d.left -= int64(n)
	return n, nil
}

// ApplyDelta rebuilds the target USR from the verified delta file src and
// base (the running slot's USR content), streaming it onto t like
// WritePayload: the result's SHA-256 is checked on the read-back after
// fsync. Call VerifyBase first.
func ApplyDelta(ctx context.Context, src string, p Payload, base io.ReaderAt, t Target, progress func(done, total int64)) (WriteStats, error) {
	if p.BaseSHA256 == "" {
		return WriteStats{}, fmt.Errorf("payload %s is not a delta", p.Name)
	}
	in, err := os.Open(src)
	if err != nil {
		return WriteStats{}, err
	}
	defer in.Close()
	dec, err := zstd.NewReader(newVerifyingReader(in, p.Name, p.Size, p.SHA256), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return WriteStats{}, err
	}
	defer dec.Close()
	ops := bufio.NewReaderSize(dec, 1<<20)
	magic := make([]byte, len(deltaMagic))
	if _, err := io.ReadFull(ops, magic); err != nil || string(magic) != deltaMagic {
		return WriteStats{}, fmt.Errorf("payload %s: not a Pith delta", p.Name)
	}
	r := newVerifyingReader(&deltaReader{ops: ops, base: base, size: p.BaseSize}, p.Name+" (rebuilt USR)", p.UncompressedSize, p.UncompressedSHA256)
	r.sizeOnly = true // writeStream's read-back hashes the rebuilt USR
	return writeStream(ctx, r, p, t, progress)
}
