// Package disk writes Pith's raw disk image from a layout and per-partition
// content files: the GPT (github.com/diskfs/go-diskfs), GRUB's boot code in
// the MBR, and each partition's content copied in sparsely; and converts the
// raw image to qcow2.
package disk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/pith-os/pith/image/layout"
)

// Content is what goes into one partition.
type Content struct {
	Label string // partition label (layout.Label*)
	Path  string // file whose bytes are copied to the partition's start
	Data  []byte // or the bytes themselves (Path empty)
}

// Written describes a partition's content after Write.
type Written struct {
	Label  string
	Size   int64  // content bytes
	SHA256 string // of those bytes: the first Size bytes of the partition
}

// Options configure Write.
type Options struct {
	Table    *layout.Table
	Contents []Content
	// Attributes are GPT attribute words by partition label (gptprio).
	Attributes map[string]uint64
	// BootCode is placed at the start of sector 0 (at most 440 bytes, the
	// rest of the MBR belongs to the protective partition entry).
	BootCode []byte
	// Progress, if set, is called with bytes copied so far and the total.
	Progress func(done, total int64)
}

const blockSize = 4096

// Write creates the raw image at path (sparse: only non-zero 4 KiB blocks
// are written) and returns what each partition received.
func Write(ctx context.Context, path string, o Options) ([]Written, error) {
	t := o.Table
	if len(o.BootCode) > 440 {
		return nil, fmt.Errorf("boot code is %d bytes, at most 440 fit before the MBR's disk signature", len(o.BootCode))
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(t.DiskSize); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}

	// Sizes first, to check they fit and to know the total for progress.
	var total int64
	sizes := map[string]int64{}
	for _, c := range o.Contents {
		n := int64(len(c.Data))
		if c.Path != "" {
			st, err := os.Stat(c.Path)
			if err != nil {
				return nil, err
			}
			n = st.Size()
		}
		if _, ok := t.ByLabel(c.Label); !ok {
			return nil, fmt.Errorf("no partition %s in the layout", c.Label)
		}
		sizes[c.Label] = n
		total += n
	}
	if err := t.CheckFits(sizes); err != nil {
		return nil, err
	}

	if err := writeGPT(f, t, o.Attributes); err != nil {
		return nil, err
	}
	if len(o.BootCode) > 0 {
		if _, err := f.WriteAt(o.BootCode, 0); err != nil {
			return nil, err
		}
	}

	var done int64
	var out []Written
	for _, c := range o.Contents {
		p := t.MustLabel(c.Label)
		var r io.Reader = bytes.NewReader(c.Data)
		if c.Path != "" {
			src, err := os.Open(c.Path)
			if err != nil {
				return nil, err
			}
			defer src.Close()
			r = src
		}
		h := sha256.New()
		n, err := copySparse(ctx, f, p.Start, io.TeeReader(r, h), func(n int64) {
			if o.Progress != nil {
				o.Progress(done+n, total)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", c.Label, err)
		}
		done += n
		out = append(out, Written{Label: c.Label, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return out, f.Close()
}

// writeGPT writes the protective MBR and both GPTs with go-diskfs. Its
// table keeps each partition's Index, so the numbering gaps (5, 7, 8) of
// the CoreOS layout survive.
func writeGPT(f *os.File, t *layout.Table, attrs map[string]uint64) error {
	table := &gpt.Table{
		LogicalSectorSize:  layout.SectorSize,
		PhysicalSectorSize: layout.SectorSize,
		GUID:               t.DiskGUID,
		ProtectiveMBR:      true,
	}
	for _, p := range t.Partitions {
		table.Partitions = append(table.Partitions, &gpt.Partition{
			Index:      p.Number,
			Start:      p.FirstLBA(),
			End:        p.LastLBA(),
			Type:       gpt.Type(p.Type),
			Name:       p.Label,
			GUID:       p.GUID,
			Attributes: attrs[p.Label],
		})
	}
	if err := table.Write(f, t.DiskSize); err != nil {
		return fmt.Errorf("writing GPT: %w", err)
	}
	return nil
}

var zeroBlock = make([]byte, blockSize)

// copySparse copies r to w at off, skipping all-zero blocks so they stay
// holes in a sparse file. It reports progress after each chunk.
func copySparse(ctx context.Context, w io.WriterAt, off int64, r io.Reader, progress func(int64)) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, err := io.ReadFull(r, buf)
		if m > 0 {
			chunk := buf[:m]
			// Write maximal runs of non-zero blocks.
			for i := 0; i < len(chunk); {
				end := min(i+blockSize, len(chunk))
				if bytes.Equal(chunk[i:end], zeroBlock[:end-i]) {
					i = end
					continue
				}
				j := end
				for j < len(chunk) {
					e := min(j+blockSize, len(chunk))
					if bytes.Equal(chunk[j:e], zeroBlock[:e-j]) {
						break
					}
					j = e
				}
				if _, err := w.WriteAt(chunk[i:j], off+n+int64(i)); err != nil {
					return n, err
				}
				i = j
			}
			n += int64(m)
			progress(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
