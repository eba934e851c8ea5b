package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// partitionDisk applies d to its device node dev: reads the GPT, computes
// the new layout and, if anything changes, writes both GPTs and has the
// kernel re-read them. The device is opened exclusively (the kernel
// refuses it while another holder has the whole disk), but a mounted
// partition does not block that: Apply refuses the boot disk before.
func partitionDisk(d Disk, dev string, log *slog.Logger) error {
	dk, err := diskfs.Open(dev, diskfs.WithOpenMode(diskfs.ReadWriteExclusive))
	if err != nil {
		return fmt.Errorf("%s: opening exclusively: %w (is it the boot disk, or in use?)", d.Device, err)
	}
	defer dk.Close()
	g := Geometry{SectorSize: uint64(dk.LogicalBlocksize)}
	if g.SectorSize == 0 {
		g.SectorSize = 512
	}
	g.Sectors = uint64(dk.Size) / g.SectorSize
	var existing []Entry
	diskGUID := ""
	t, err := dk.GetPartitionTable()
	if err != nil && !d.WipeTable {
		// No table go-diskfs can read is not a blank disk: a filesystem,
		// LVM or LUKS on the whole disk, or a GPT with both copies bad.
		empty, zerr := zeroEnds(dk.Backend, dk.Size)
		if zerr != nil {
			return fmt.Errorf("%s: reading its first and last MiB: %w", d.Device, zerr)
		}
		if !empty {
			return fmt.Errorf("%s has no readable partition table (%v) but is not blank (data in its first or last MiB); set wipeTable to replace it", d.Device, err)
		}
	}
	if err == nil {
		gt, ok := t.(*gpt.Table)
		switch {
		case !ok && !d.WipeTable:
			return fmt.Errorf("%s has a %s partition table, not GPT; set wipeTable to replace it", d.Device, t.Type())
		case ok:
			existing = entriesOf(gt)
			diskGUID = gt.GUID
		}
	}
	entries, changes, err := Layout(d, existing, g)
	if err != nil {
		return err
	}
	for _, c := range changes {
		log.LogAttrs(context.Background(), slog.LevelInfo, c.Msg, c.Attrs...)
	}
	if !d.WipeTable && sameEntries(existing, entries) {
		return nil
	}
	if d.WipeTable {
		diskGUID = ""
	}
	table := &gpt.Table{
		LogicalSectorSize:  int(g.SectorSize),
		PhysicalSectorSize: int(g.SectorSize),
		GUID:               diskGUID,
		ProtectiveMBR:      true,
	}
	for _, e := range entries {
		table.Partitions = append(table.Partitions, &gpt.Partition{
			Index: e.Number, Start: e.Start, End: e.End, Size: (e.End - e.Start + 1) * g.SectorSize,
			Type: gpt.Type(e.Type), Name: e.Label, GUID: e.GUID, Attributes: e.Attributes,
		})
	}
	if err := dk.Partition(table); err != nil {
		return fmt.Errorf("%s: writing the partition table: %w", d.Device, err)
	}
	return nil
}

// zeroEnds reports whether the first and last MiB of a disk of size bytes
// are all zeros, where every partition table and most signatures live.
func zeroEnds(r io.ReaderAt, size int64) (bool, error) {
	const mib = 1 << 20
	buf := make([]byte, mib)
	for _, off := range []int64{0, max(size-mib, 0)} {
		n, err := r.ReadAt(buf[:min(mib, size)], off)
		if err != nil && !(errors.Is(err, io.EOF) && int64(n) == min(mib, size)) {
			return false, err
		}
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
	}
	return true, nil
}

func entriesOf(t *gpt.Table) []Entry {
	var out []Entry
	for _, p := range t.Partitions {
		if p.Type == gpt.Unused {
			continue
		}
		out = append(out, Entry{
			Number: p.Index, Start: p.Start, End: p.End, Type: strings.ToUpper(string(p.Type)),
			GUID: strings.ToUpper(p.GUID), Label: p.Name, Attributes: p.Attributes,
		})
	}
	return out
}

func sameEntries(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if b[i].New || a[i].Number != b[i].Number || a[i].Start != b[i].Start || a[i].End != b[i].End {
			return false
		}
	}
	return true
}
