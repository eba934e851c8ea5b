package channels

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Target is where a payload's uncompressed bytes go: a block device (the
// inactive USR partition), or a region of a file (a partition inside a disk
// image, for tests and offline updates).
type Target struct {
	Path string
	// Offset is where the region starts.
	Offset int64
	// Limit is the region's length; 0 means up to the end of the device/file.
	Limit int64
}

// ErrTargetTooSmall means the payload does not fit the target.
var ErrTargetTooSmall = errors.New("payload larger than the target")

const writeChunk = 1 << 20

// WriteStats reports the phases of WritePayload, for the update's timing
// breakdown.
type WriteStats struct {
	Bytes    int64
	Write    float64 // seconds: decompress + write + fsync
	ReadBack float64 // seconds: read-back verification
}

// WritePayload streams the decompressed payload from the compressed file src
// (already downloaded and verified) onto the target, fsyncs it, drops the
// written range from the page cache, and reads it back to compare with the
// manifest's uncompressed SHA-256. The target must exist: a mistyped device
// path must not become a regular file under /dev.
func WritePayload(ctx context.Context, src string, p Payload, t Target, progress func(done, total int64)) (WriteStats, error) {
	in, err := os.Open(src)
	if err != nil {
		return WriteStats{}, err
	}
	defer in.Close()
	// src was verified when downloaded; the uncompressed hash (and the
	// read-back after it) still cover every byte that reaches the target.
	r, err := decompress(in, p, false)
	if err != nil {
		return WriteStats{}, err
	}
	defer r.Close()
	return writeStream(ctx, r, p, t, progress)
}

// writeStream writes r (which must end with an error unless its content
// matches p's uncompressed size and hash) onto t, then fsyncs and reads back.
func writeStream(ctx context.Context, r io.Reader, p Payload, t Target, progress func(done, total int64)) (WriteStats, error) {
	var st WriteStats
	out, err := os.OpenFile(t.Path, os.O_RDWR, 0)
	if err != nil {
		return st, fmt.Errorf("update target: %w", err)
	}
	defer out.Close()
	end, err := out.Seek(0, io.SeekEnd) // works for block devices too
	if err != nil {
		return st, fmt.Errorf("update target %s: size: %w", t.Path, err)
	}
	room := end - t.Offset
	if t.Limit > 0 && t.Limit < room {
		room = t.Limit
	}
	if t.Offset < 0 || room < p.UncompressedSize {
		return st, fmt.Errorf("%w: %s needs %d bytes, %s has %d at offset %d", ErrTargetTooSmall, p.Name, p.UncompressedSize, t.Path, max(room, 0), t.Offset)
	}
	start := nowSeconds()
	// Decompress (and hash) in one goroutine while writing in this one: on
	// two cores the write phase then runs at the slower of the two speeds
	// rather than at their sum.
	type piece struct {
		b   []byte
		n   int
		err error
	}
	const inFlight = 4
	free := make(chan []byte, inFlight)
	for i := 0; i < inFlight; i++ {
		free <- make([]byte, writeChunk)
	}
	full := make(chan piece, inFlight)
	stop, readerDone := make(chan struct{}), make(chan struct{})
	// On an early return, stop the reader and wait for it: the caller
	// closes r (a zstd decoder) right after, which must not race a Read.
	defer func() { close(stop); <-readerDone }()
	go func() {
		defer close(readerDone)
		defer close(full)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-stop:
				return
			}
			n, err := io.ReadFull(r, b)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			select {
			case full <- piece{b, n, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	off := t.Offset
	var done int64
	for c := range full {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if c.n > 0 {
			if _, werr := out.WriteAt(c.b[:c.n], off); werr != nil {
				return st, fmt.Errorf("write %s at %d: %w", t.Path, off, werr)
			}
			off += int64(c.n)
			done += int64(c.n)
			if progress != nil {
				progress(done, p.UncompressedSize)
			}
		}
		if c.err == io.EOF {
			break
		}
		if c.err != nil {
			return st, c.err
		}
		free <- c.b
	}
	if done != p.UncompressedSize {
		return st, fmt.Errorf("%w: %s decompressed to %d bytes, the manifest says %d", ErrSize, p.Name, done, p.UncompressedSize)
	}
	if err := out.Sync(); err != nil {
		return st, fmt.Errorf("fsync %s: %w", t.Path, err)
	}
	st.Bytes = done
	st.Write = nowSeconds() - start

	// Read back from the device, not the page cache we just filled.
	start = nowSeconds()
	_ = unix.Fadvise(int(out.Fd()), t.Offset, done, unix.FADV_DONTNEED)
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(out, t.Offset, done)); err != nil {
		return st, fmt.Errorf("read back %s: %w", t.Path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.UncompressedSHA256 {
		return st, fmt.Errorf("%w: read back from %s gives sha256 %s, wrote %s; the device may be failing", ErrHash, t.Path, got, p.UncompressedSHA256)
	}
	st.ReadBack = nowSeconds() - start
	return st, nil
}

// InstallFile decompresses payload file src into dst (a kernel or initrd on
// the ESP): written to a temporary file in dst's directory, verified, fsynced
// and renamed, so dst is always either the old or the complete new file.
func InstallFile(src string, p Payload, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	r, err := Decompress(in, p)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Read back before the rename: vfat has no checksums of its own.
	got, err := fileSHA256(tmp)
	if err != nil {
		return err
	}
	if got != p.UncompressedSHA256 {
		return fmt.Errorf("%w: read back of %s gives sha256 %s, want %s", ErrHash, dst, got, p.UncompressedSHA256)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func nowSeconds() float64 { return float64(time.Now().UnixNano()) / 1e9 }
