package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// blockSize is the unit of copying and of zero detection.
const blockSize = 1 << 20

// copySparse copies r to w from offset 0, leaving all-zero blocks as holes
// (w is a fresh file), and returns the bytes read. progress gets the bytes
// done out of total.
func copySparse(ctx context.Context, w io.WriterAt, r io.Reader, total int64, progress func(done, total int64)) (int64, error) {
	buf := make([]byte, blockSize)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, werr := w.WriteAt(buf[:n], off); werr != nil {
				return off, werr
			}
		}
		off += int64(n)
		if progress != nil {
			progress(off, total)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return off, nil
		}
		if err != nil {
			return off, err
		}
	}
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if *(*uint64)(unsafe.Pointer(&b[0])) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// writeImage copies the verified image at src onto the target: its data
// extents are written, its holes zeroed on the target (BLKZEROOUT on a
// device, a punched hole in a file) so no earlier content survives inside
// the image's span. It returns the bytes of data written.
func writeImage(ctx context.Context, src string, t *target, size int64, progress func(done, total int64)) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(t.path, os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("device %s: %v", t.path, err)
	}
	defer out.Close()
	buf := make([]byte, 4*blockSize)
	var written, off int64
	for off < size {
		data, hole, err := nextExtent(in, off, size)
		if err != nil {
			return written, err
		}
		if data > off {
			if err := zeroRange(out, t.block, off, data-off); err != nil {
				return written, fmt.Errorf("device %s: zeroing %d bytes at %d: %v", t.path, data-off, off, err)
			}
		}
		for p := data; p < hole; {
			if err := ctx.Err(); err != nil {
				return written, err
			}
			n := int(min(int64(len(buf)), hole-p))
			if _, err := in.ReadAt(buf[:n], p); err != nil {
				return written, err
			}
			if _, err := out.WriteAt(buf[:n], p); err != nil {
				return written, fmt.Errorf("device %s: writing at %d: %v", t.path, p, err)
			}
			p += int64(n)
			written += int64(n)
			if progress != nil {
				progress(p, size)
			}
		}
		off = hole
	}
	if progress != nil {
		progress(size, size)
	}
	if err := out.Sync(); err != nil {
		return written, fmt.Errorf("device %s: sync: %v", t.path, err)
	}
	return written, nil
}

// nextExtent returns the next data extent [data, hole) at or after off;
// data == size when only a hole remains. Without SEEK_DATA the whole rest
// is one extent.
func nextExtent(f *os.File, off, size int64) (int64, int64, error) {
	data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return size, size, nil
	}
	if err != nil {
		return off, size, nil
	}
	hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
	if err != nil || hole > size {
		hole = size
	}
	return min(data, size), hole, nil
}

// zeroRange makes [off, off+n) read as zeros: BLKZEROOUT on a block
// device (the disk's write-zeroes, no data moved), a punched hole in a
// file, or written zeros where neither works.
func zeroRange(f *os.File, block bool, off, n int64) error {
	var err error
	if block {
		r := [2]uint64{uint64(off), uint64(n)}
		_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r[0])))
		if e == 0 {
			return nil
		}
		err = e
	} else {
		err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if err == nil {
			return nil
		}
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return err
	}
	zeros := make([]byte, blockSize)
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}
