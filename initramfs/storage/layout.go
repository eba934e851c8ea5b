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
// kept; one that differs is an error unless wipePartitionEntry allows
// replacing it; shouldExist false deletes (with wipePartitionEntry) or
// fails; a missing one is created, at the start of the largest free block
// and as large as that block unless startMiB/sizeMiB say otherwise.
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
	findLabel := func(l string) int {
		for _, n := range sortedNumbers(byNum) {
			if byNum[n].Label == l {
				return n
			}
		}
		return 0
	}
	mib := g.mib()
	var create []Partition
	for _, p := range d.Partitions {
		n := p.Number
		if n == 0 && p.Label != nil {
			n = findLabel(*p.Label)
		}
		cur, exists := byNum[n]
		name := describePart(d.Device, p, n)
		attrs := partAttrs(d.Device, p, n)
		switch {
		case !p.ShouldExist && !exists:
		case !p.ShouldExist && !p.WipeEntry:
			return nil, nil, fmt.Errorf("%s exists and shouldExist is false, but wipePartitionEntry is not set: refusing to delete it", name)
		case !p.ShouldExist:
			delete(byNum, n)
			log = append(log, Change{"partition deleted", attrs})
		case exists:
			if why := mismatch(p, cur, mib); why != "" {
				if !p.WipeEntry {
					return nil, nil, fmt.Errorf("%s exists but %s; set wipePartitionEntry to replace it", name, why)
				}
				delete(byNum, n)
				log = append(log, Change{"partition replaced", append(attrs, slog.String("why", why))})
				p.Number = n
				create = append(create, p)
			} else {
				log = append(log, Change{"partition kept, as wanted", attrs})
			}
		default:
			p.Number = n
			create = append(create, p)
		}
	}
	first, last := g.usable()
	for _, p := range create {
		if p.Number == 0 {
			for n := 1; n <= 128; n++ {
				if _, used := byNum[n]; !used {
					p.Number = n
					break
				}
			}
		}
		if _, used := byNum[p.Number]; used || p.Number == 0 {
			return nil, nil, fmt.Errorf("%s: partition number %d is already taken", d.Device, p.Number)
		}
		gaps := freeBlocks(byNum, first, last, mib)
		var start, end uint64
		if p.StartMiB != nil && *p.StartMiB > 0 {
			start = uint64(*p.StartMiB) * mib
			gap, ok := gapAt(gaps, start)
			if !ok {
				return nil, nil, fmt.Errorf("%s: startMiB %d is not in free space", describePart(d.Device, p, p.Number), *p.StartMiB)
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
				return nil, nil, fmt.Errorf("%s: no free space left on the disk", describePart(d.Device, p, p.Number))
			}
			start, end = best[0], best[1]
		}
		if p.SizeMiB != nil && *p.SizeMiB > 0 {
			want := start + uint64(*p.SizeMiB)*mib - 1
			if want > end {
				return nil, nil, fmt.Errorf("%s: %d MiB does not fit in the free space at %d MiB (%d MiB free)", describePart(d.Device, p, p.Number), *p.SizeMiB, start/mib, (end-start+1)/mib)
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
		log = append(log, Change{"partition created", append(partAttrs(d.Device, p, p.Number), slog.Uint64("size_mib", (end-start+1)/mib), slog.Uint64("start_mib", start/mib))})
	}
	out := make([]Entry, 0, len(byNum))
	for _, n := range sortedNumbers(byNum) {
		out = append(out, byNum[n])
	}
	return out, log, nil
}

// mismatch says how an existing partition differs from what p asks, or "".
func mismatch(p Partition, e Entry, mib uint64) string {
	switch {
	case p.StartMiB != nil && *p.StartMiB > 0 && uint64(*p.StartMiB)*mib != e.Start:
		return fmt.Sprintf("it starts at sector %d, not at %d MiB", e.Start, *p.StartMiB)
	case p.SizeMiB != nil && *p.SizeMiB > 0 && uint64(*p.SizeMiB)*mib != e.End-e.Start+1:
		return fmt.Sprintf("it has %d sectors, not %d MiB", e.End-e.Start+1, *p.SizeMiB)
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
