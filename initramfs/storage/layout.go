package storage

import (
	"fmt"
	"log/slog"
	"sort"
)

// LinuxFilesystemType is the GPT type Ignition gives a partition without
// a typeGuid.
const LinuxFilesystemType = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

// Entry is one partition of a GPT: sectors are logical, End inclusive.
type Entry struct {
	Number     int
	Start, End uint64
	Type, GUID string // upper case; an empty GUID is made when written
	Label      string
	Attributes uint64
	New        bool // created by this plan
}

// Geometry is what Layout needs to know of the disk.
type Geometry struct {
	Sectors    uint64 // logical sectors on the disk
	SectorSize uint64 // bytes
}

func (g Geometry) mib() uint64 { return (1 << 20) / g.SectorSize }

// usable returns the first and last sector a partition may use with a
// standard 128-entry GPT at both ends.
func (g Geometry) usable() (first, last uint64) {
	entries := 128 * 128 / g.SectorSize
	return 2 + entries, g.Sectors - 2 - entries
}

// Change is one change Layout makes to a disk, for the log: a record's
// message and attributes.
type Change struct {
	Msg   string
	Attrs []slog.Attr
}

// Layout returns the partitions the disk will have after d is applied to
// the existing ones, and each change for the log. It follows
// Ignition: a listed partition that exists and matches what is given is
// kept; one that matches but for its size is grown in place with resize
// (its start, number, type, GUID and label kept; never shrunk); one that
// differs otherwise is an error unless wipePartitionEntry allows
// replacing it; shouldExist false deletes (with wipePartitionEntry) or
// fails; a missing one is created, at the start of the largest free block
// and as large as that block unless startMiB/sizeMiB say otherwise.
// Deletions come first, then what is kept or grown, then what is created,
// so a partition given up makes room for the others (Ignition sizes
// partitions as if the listed ones were deleted first, too).
func Layout(d Disk, existing []Entry, g Geometry) ([]Entry, []Change, error) {
	if g.SectorSize == 0 || (1<<20)%g.SectorSize != 0 {
		return nil, nil, fmt.Errorf("%s: unsupported sector size %d", d.Device, g.SectorSize)
	}
	byNum := map[int]Entry{}
	var log []Change
	if d.WipeTable {
		if len(existing) > 0 {
			log = append(log, Change{"wiping the partition table", []slog.Attr{slog.String("disk", d.Device), slog.Int("partitions", len(existing))}})
		}
	} else {
		for _, e := range existing {
			byNum[e.Number] = e
		}
	}
	parts := numbered(d.Partitions, byNum)
	for _, p := range parts {
		if _, exists := byNum[p.Number]; p.ShouldExist || !exists {
			continue
		}
		if !p.WipeEntry {
			return nil, nil, fmt.Errorf("%s exists and shouldExist is false, but wipePartitionEntry is not set: refusing to delete it", describePart(d.Device, p, p.Number))
		}
		delete(byNum, p.Number)
		log = append(log, Change{"partition deleted", partAttrs(d.Device, p, p.Number)})
	}
	_, last := g.usable()
	var create []Partition
	for _, p := range parts {
		cur, exists := byNum[p.Number]
		switch {
		case !p.ShouldExist:
		case !exists:
			create = append(create, p)
		default:
			e, c, replace, err := keepOrGrow(d.Device, p, cur, byNum, last, g.mib())
			if err != nil {
				return nil, nil, err
			}
			log = append(log, c)
			if replace {
				delete(byNum, p.Number)
				create = append(create, p)
			} else {
				byNum[p.Number] = e
			}
		}
	}
	for _, p := range create {
		c, err := place(d.Device, p, byNum, g)
		if err != nil {
			return nil, nil, err
		}
		log = append(log, c)
	}
	out := make([]Entry, 0, len(byNum))
	for _, n := range sortedNumbers(byNum) {
		out = append(out, byNum[n])
	}
	return out, log, nil
}

// numbered returns ps with each number 0 that names an existing
// partition by its label replaced by that partition's number.
func numbered(ps []Partition, byNum map[int]Entry) []Partition {
	out := make([]Partition, len(ps))
	for i, p := range ps {
		if p.Number == 0 && p.Label != nil {
			for _, n := range sortedNumbers(byNum) {
				if byNum[n].Label == *p.Label {
					p.Number = n
					break
				}
			}
		}
		out[i] = p
	}
	return out
}

// keepOrGrow decides on the existing partition cur that p lists: kept
// (the entry as it stays), grown (p.Resize), or to be replaced
// (wipePartitionEntry); a mismatch otherwise, and any shrink, is an
// error. last is the disk's last usable sector.
func keepOrGrow(dev string, p Partition, cur Entry, byNum map[int]Entry, last, mib uint64) (Entry, Change, bool, error) {
	name := describePart(dev, p, p.Number)
	attrs := partAttrs(dev, p, p.Number)
	why := mismatch(p, cur, mib)
	end, room := wantEnd(p, cur, byNum, last, mib)
	hint := ""
	if why == "" && end != cur.End {
		if end > cur.End {
			hint = ", or resize to grow it"
		}
		why = fmt.Sprintf("it has %d sectors, not %s", cur.End-cur.Start+1, sizeWanted(p))
		if p.Resize {
			switch {
			case end < cur.End:
				// Ignition would recreate the entry smaller, cutting
				// off the end of whatever filesystem is on it.
				return Entry{}, Change{}, false, fmt.Errorf("%s: resize would shrink it from %d to %d MiB: Pith only grows partitions (a shrink cuts off the end of the filesystem on it)", name, (cur.End-cur.Start+1)/mib, (end-cur.Start+1)/mib)
			case end > room:
				return Entry{}, Change{}, false, fmt.Errorf("%s: resize to %s does not fit: %d MiB from its start to the next partition or the end of the disk", name, sizeWanted(p), (room-cur.Start+1)/mib)
			}
			grown := cur
			grown.End = end
			return grown, Change{"partition grown in place", append(attrs, slog.Uint64("from_mib", (cur.End-cur.Start+1)/mib), slog.Uint64("to_mib", (end-cur.Start+1)/mib))}, false, nil
		}
	}
	switch {
	case why == "":
		return cur, Change{"partition kept, as wanted", attrs}, false, nil
	case !p.WipeEntry && p.Resize:
		return Entry{}, Change{}, false, fmt.Errorf("%s exists but %s, which resize does not change (only the size); set wipePartitionEntry to replace it", name, why)
	case !p.WipeEntry:
		return Entry{}, Change{}, false, fmt.Errorf("%s exists but %s; set wipePartitionEntry to replace it%s", name, why, hint)
	}
	return Entry{}, Change{"partition replaced", append(attrs, slog.String("why", why))}, true, nil
}

// wantEnd returns the last sector p asks of the existing partition e
// (e.End when p gives no sizeMiB; sizeMiB 0 is the end of the free space
// after it, what sgdisk gives a new partition there, as Ignition matches
// it) and room, the last sector e could grow to.
func wantEnd(p Partition, e Entry, byNum map[int]Entry, last, mib uint64) (end, room uint64) {
	room = last
	for n, o := range byNum {
		if n != e.Number && o.Start > e.Start && o.Start-1 < room {
			room = o.Start - 1
		}
	}
	switch {
	case p.SizeMiB == nil:
		return e.End, room
	case *p.SizeMiB == 0:
		return room, room
	}
	return e.Start + uint64(*p.SizeMiB)*mib - 1, room
}

func sizeWanted(p Partition) string {
	if *p.SizeMiB == 0 {
		return "the free space after it (sizeMiB 0)"
	}
	return fmt.Sprintf("%d MiB", *p.SizeMiB)
}

// place adds the new partition p to byNum: numbered (the first free
// number when 0), at startMiB or the start of the largest free block,
// sizeMiB or the rest of its free block long.
func place(dev string, p Partition, byNum map[int]Entry, g Geometry) (Change, error) {
	if p.Number == 0 {
		for n := 1; n <= 128; n++ {
			if _, used := byNum[n]; !used {
				p.Number = n
				break
			}
		}
	}
	if _, used := byNum[p.Number]; used || p.Number == 0 {
		return Change{}, fmt.Errorf("%s: partition number %d is already taken", dev, p.Number)
	}
	mib := g.mib()
	first, last := g.usable()
	gaps := freeBlocks(byNum, first, last, mib)
	var start, end uint64
	if p.StartMiB != nil && *p.StartMiB > 0 {
		start = uint64(*p.StartMiB) * mib
		gap, ok := gapAt(gaps, start)
		if !ok {
			return Change{}, fmt.Errorf("%s: startMiB %d is not in free space", describePart(dev, p, p.Number), *p.StartMiB)
		}
		end = gap[1]
	} else {
		var best [2]uint64
		for _, gp := range gaps {
			if gp[1]-gp[0] > best[1]-best[0] || best == [2]uint64{} {
				best = gp
			}
		}
		if best == [2]uint64{} {
			return Change{}, fmt.Errorf("%s: no free space left on the disk", describePart(dev, p, p.Number))
		}
		start, end = best[0], best[1]
	}
	if p.SizeMiB != nil && *p.SizeMiB > 0 {
		want := start + uint64(*p.SizeMiB)*mib - 1
		if want > end {
			return Change{}, fmt.Errorf("%s: %d MiB does not fit in the free space at %d MiB (%d MiB free)", describePart(dev, p, p.Number), *p.SizeMiB, start/mib, (end-start+1)/mib)
		}
		end = want
	}
	e := Entry{Number: p.Number, Start: start, End: end, Type: p.TypeGUID, GUID: p.GUID, New: true}
	if e.Type == "" {
		e.Type = LinuxFilesystemType
	}
	if p.Label != nil {
		e.Label = *p.Label
	}
	byNum[p.Number] = e
	return Change{"partition created", append(partAttrs(dev, p, p.Number), slog.Uint64("size_mib", (end-start+1)/mib), slog.Uint64("start_mib", start/mib))}, nil
}

// mismatch says how an existing partition differs from what p asks, its
// size aside (wantEnd), or "".
func mismatch(p Partition, e Entry, mib uint64) string {
	switch {
	case p.StartMiB != nil && *p.StartMiB > 0 && uint64(*p.StartMiB)*mib != e.Start:
		return fmt.Sprintf("it starts at sector %d, not at %d MiB", e.Start, *p.StartMiB)
	case p.TypeGUID != "" && p.TypeGUID != e.Type:
		return fmt.Sprintf("its type is %s, not %s", e.Type, p.TypeGUID)
	case p.GUID != "" && p.GUID != e.GUID:
		return fmt.Sprintf("its GUID is %s, not %s", e.GUID, p.GUID)
	case p.Label != nil && *p.Label != e.Label:
		return fmt.Sprintf("its label is %q, not %q", e.Label, *p.Label)
	}
	return ""
}

// freeBlocks lists the free sector ranges (inclusive), each start aligned
// to 1 MiB, between first and last.
func freeBlocks(used map[int]Entry, first, last, align uint64) [][2]uint64 {
	es := make([]Entry, 0, len(used))
	for _, e := range used {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].Start < es[j].Start })
	var out [][2]uint64
	pos := first
	add := func(from, to uint64) {
		from = (from + align - 1) / align * align
		if from <= to && to-from+1 >= align {
			out = append(out, [2]uint64{from, to})
		}
	}
	for _, e := range es {
		if e.Start > pos {
			add(pos, e.Start-1)
		}
		if e.End+1 > pos {
			pos = e.End + 1
		}
	}
	if pos <= last {
		add(pos, last)
	}
	return out
}

func gapAt(gaps [][2]uint64, s uint64) ([2]uint64, bool) {
	for _, g := range gaps {
		if s >= g[0] && s <= g[1] {
			return g, true
		}
	}
	return [2]uint64{}, false
}

func describePart(dev string, p Partition, n int) string {
	switch {
	case n > 0 && p.Label != nil:
		return fmt.Sprintf("%s partition %d (%q)", dev, n, *p.Label)
	case n > 0:
		return fmt.Sprintf("%s partition %d", dev, n)
	case p.Label != nil:
		return fmt.Sprintf("%s partition %q", dev, *p.Label)
	}
	return dev + " new partition"
}

// partAttrs names a partition in a Change: its disk, number (when known)
// and label (when given).
func partAttrs(dev string, p Partition, n int) []slog.Attr {
	as := []slog.Attr{slog.String("disk", dev)}
	if n > 0 {
		as = append(as, slog.Int("number", n))
	}
	if p.Label != nil {
		as = append(as, slog.String("label", *p.Label))
	}
	return as
}
