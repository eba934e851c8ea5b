package vm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// Console reads a serial log file that QEMU keeps appending to.
type Console struct {
	Path string
}

// ReadFrom returns the log from offset on.
func (c Console) ReadFrom(offset int64) ([]byte, error) {
	f, err := os.Open(c.Path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// WaitFor polls the log from offset until one of markers appears and returns
// the offset just past the match and the marker found. done (optional) ends
// the wait early, e.g. when QEMU exits. out, if set, receives the log as it
// grows (to follow the console).
func (c Console) WaitFor(ctx context.Context, offset int64, done <-chan struct{}, out io.Writer, markers ...string) (int64, string, error) {
	var buf []byte // text since offset, kept to match markers split across reads
	base := offset
	exited := false
	for {
		b, err := c.ReadFrom(base + int64(len(buf)))
		if err != nil {
			return offset, "", err
		}
		if len(b) > 0 {
			if out != nil {
				out.Write(b)
			}
			buf = append(buf, b...)
			for _, m := range markers {
				if i := bytes.Index(buf, []byte(m)); i >= 0 {
					return base + int64(i+len(m)), m, nil
				}
			}
			// Keep only a tail long enough to hold a marker split in two.
			if keep := 4096; len(buf) > 2*keep {
				base += int64(len(buf) - keep)
				buf = append([]byte(nil), buf[len(buf)-keep:]...)
			}
		}
		if exited && len(b) == 0 {
			return offset, "", fmt.Errorf("console %s: machine stopped before %q appeared", c.Path, markers)
		}
		select {
		case <-ctx.Done():
			return offset, "", fmt.Errorf("console %s: waiting for %q: %w", c.Path, markers, ctx.Err())
		case <-done:
			// Read once more: the marker may have been written just before exit.
			exited, done = true, nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Size is the log's current length (the offset to wait from for what comes next).
func (c Console) Size() int64 {
	st, err := os.Stat(c.Path)
	if err != nil {
		return 0
	}
	return st.Size()
}
