package channels

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"github.com/pith-os/pith/atomicfile"
)

// BuildPayload reads src to its end, compresses it with zstd into dst
// (written beside, then renamed) and returns the payload's sizes and hashes.
// Name and Path are left for the caller.
func BuildPayload(src io.Reader, dst string) (Payload, error) {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
	if err != nil {
		return Payload{}, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	defer f.Close()

	zsum := sha256.New()
	zcount := &countWriter{}
	enc, err := zstd.NewWriter(io.MultiWriter(f, zsum, zcount),
		zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(true))
	if err != nil {
		return Payload{}, err
	}
	usum := sha256.New()
	n, err := io.Copy(enc, io.TeeReader(src, usum))
	if err != nil {
		enc.Close()
		return Payload{}, err
	}
	if err := enc.Close(); err != nil {
		return Payload{}, err
	}
	if n == 0 {
		return Payload{}, fmt.Errorf("payload %s: source is empty", filepath.Base(dst))
	}
	if err := publishPayload(f, dst); err != nil {
		return Payload{}, err
	}
	return Payload{
		Compression:        CompressionZstd,
		Size:               zcount.n,
		SHA256:             hex.EncodeToString(zsum.Sum(nil)),
		UncompressedSize:   n,
		UncompressedSHA256: hex.EncodeToString(usum.Sum(nil)),
	}, nil
}

// StoreRawPayload copies src into dst uncompressed (for content zstd cannot
// shrink, like a squashfs USR: the node then skips decompression).
func StoreRawPayload(src io.Reader, dst string) (Payload, error) {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
	if err != nil {
		return Payload{}, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), src)
	if err != nil {
		return Payload{}, err
	}
	if n == 0 {
		return Payload{}, fmt.Errorf("payload %s: source is empty", filepath.Base(dst))
	}
	if err := publishPayload(f, dst); err != nil {
		return Payload{}, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	return Payload{Compression: CompressionNone, Size: n, SHA256: sum, UncompressedSize: n, UncompressedSHA256: sum}, nil
}

// publishPayload turns the temporary file f into the payload dst: fsync,
// close, world-readable (the channel server serves it), rename, and fsync
// the directory so the name survives a crash like the manifest naming it.
func publishPayload(f *os.File, dst string) error {
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return atomicfile.Rename(f.Name(), dst)
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// verifyingReader passes bytes through while counting and hashing them. It
// reports a size error as soon as more than want bytes arrive, and at EOF
// returns ErrSize or ErrHash instead of io.EOF when the stream differs, so a
// consumer that stops at EOF cannot mistake a bad stream for a good one.
type verifyingReader struct {
	r       io.Reader
	what    string
	want    int64
	wantSum string
	n       int64
	h       hash.Hash
	err     error
	// sizeOnly skips hashing (the caller verified the bytes already).
	sizeOnly bool
}

func newVerifyingReader(r io.Reader, what string, size int64, sum string) *verifyingReader {
	return &verifyingReader{r: r, what: what, want: size, wantSum: sum, h: sha256.New()}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	if !v.sizeOnly {
		v.h.Write(p[:n])
	}
	if v.n > v.want {
		v.err = fmt.Errorf("%w: %s is longer than the manifest's %d bytes", ErrSize, v.what, v.want)
		return 0, v.err
	}
	if err == io.EOF {
		v.err = v.check()
		if v.err == nil {
			v.err = io.EOF
		}
		return n, v.err
	}
	return n, err
}

func (v *verifyingReader) check() error {
	if v.n != v.want {
		return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrSize, v.what, v.n, v.want)
	}
	if v.sizeOnly {
		return nil
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.wantSum {
		return fmt.Errorf("%w: %s has sha256 %s, the manifest says %s", ErrHash, v.what, got, v.wantSum)
	}
	return nil
}

// Decompress returns a reader of p's uncompressed content from its
// compressed stream r. Both the compressed and the uncompressed stream are
// checked against the manifest; the reader returns ErrSize or ErrHash in
// place of io.EOF when either differs.
func Decompress(r io.Reader, p Payload) (io.ReadCloser, error) {
	return decompress(r, p, true)
}

// decompress is Decompress; with verify false both streams are only
// size-checked, for a file Download verified already whose output is read
// back and hashed where it lands (WritePayload).
func decompress(r io.Reader, p Payload, verify bool) (io.ReadCloser, error) {
	cv := newVerifyingReader(r, p.Name+" (compressed)", p.Size, p.SHA256)
	cv.sizeOnly = !verify
	switch p.Compression {
	case CompressionNone:
		return io.NopCloser(cv), nil
	case CompressionZstd:
		dec, err := zstd.NewReader(cv, zstd.WithDecoderConcurrency(2),
			// Payloads come from a signed manifest, but cap memory anyway.
			zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return nil, err
		}
		uv := newVerifyingReader(dec, p.Name, p.UncompressedSize, p.UncompressedSHA256)
		uv.sizeOnly = !verify
		return &zstdPayloadReader{dec: dec, cv: cv, uv: uv}, nil
	}
	return nil, fmt.Errorf("payload %s: compression %q unknown", p.Name, p.Compression)
}

type zstdPayloadReader struct {
	dec *zstd.Decoder
	cv  *verifyingReader
	uv  *verifyingReader
}

func (z *zstdPayloadReader) Read(p []byte) (int, error) {
	n, err := z.uv.Read(p)
	if err == io.EOF {
		// The decoder may stop at the end of the last frame without reading
		// the compressed stream's EOF: drain it so its check runs too.
		if _, derr := io.Copy(io.Discard, z.cv); derr != nil {
			return n, derr
		}
	}
	return n, err
}

func (z *zstdPayloadReader) Close() error { z.dec.Close(); return nil }

// VerifyFile checks a downloaded (compressed) payload file against p.
func VerifyFile(path string, p Payload) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	v := newVerifyingReader(f, p.Name, p.Size, p.SHA256)
	_, err = io.Copy(io.Discard, v)
	return err
}
