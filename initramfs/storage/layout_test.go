package storage

import (
	"strings"
	"testing"
)

func ip(n int) *int       { return &n }
func sp(s string) *string { return &s }

// 1 GiB disk of 512-byte sectors: usable sectors 34..2097118.
var gib = Geometry{Sectors: 2 << 20, SectorSize: 512}

func TestLayout(t *testing.T) {
	const mib = 2048
	data := Entry{Number: 1, Start: mib, End: 101*mib - 1, Type: LinuxFilesystemType, GUID: "11111111-1111-1111-1111-111111111111", Label: "data"}
	for _, tc := range []struct {
		name     string
		disk     Disk
		existing []Entry
		want     []Entry // Number, Start, End, Label, Type compared
		err      string
	}{
		{name: "empty disk, one partition filling it",
			disk: Disk{Partitions: []Partition{{Label: sp("data"), ShouldExist: true}}},
			want: []Entry{{Number: 1, Start: mib, End: gib.Sectors - 34, Label: "data", Type: LinuxFilesystemType}}},
		{name: "sized partitions follow each other, numbers by order",
			disk: Disk{Partitions: []Partition{{SizeMiB: ip(100), ShouldExist: true}, {SizeMiB: ip(50), TypeGUID: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", ShouldExist: true}}},
			want: []Entry{{Number: 1, Start: mib, End: 101*mib - 1, Type: LinuxFilesystemType}, {Number: 2, Start: 101 * mib, End: 151*mib - 1, Type: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"}}},
		{name: "explicit number and start",
			disk: Disk{Partitions: []Partition{{Number: 5, StartMiB: ip(200), SizeMiB: ip(10), ShouldExist: true}}},
			want: []Entry{{Number: 5, Start: 200 * mib, End: 210*mib - 1, Type: LinuxFilesystemType}}},
		{name: "existing partition matching by label is kept",
			disk:     Disk{Partitions: []Partition{{Label: sp("data"), SizeMiB: ip(100), ShouldExist: true}}},
			existing: []Entry{data},
			want:     []Entry{data}},
		{name: "existing partition of another size is an error",
			disk:     Disk{Partitions: []Partition{{Number: 1, SizeMiB: ip(200), ShouldExist: true}}},
			existing: []Entry{data},
			err:      "set wipePartitionEntry"},
		{name: "wipePartitionEntry replaces it",
			disk:     Disk{Partitions: []Partition{{Number: 1, SizeMiB: ip(200), WipeEntry: true, ShouldExist: true}}},
			existing: []Entry{data},
			want:     []Entry{{Number: 1, Start: mib, End: 201*mib - 1, Type: LinuxFilesystemType}}},
		{name: "shouldExist false without wipe is refused",
			disk:     Disk{Partitions: []Partition{{Number: 1}}},
			existing: []Entry{data},
			err:      "refusing to delete"},
		{name: "shouldExist false deletes with wipe",
			disk:     Disk{Partitions: []Partition{{Number: 1, WipeEntry: true}}},
			existing: []Entry{data},
			want:     []Entry{}},
		{name: "shouldExist false for an absent partition is nothing",
			disk: Disk{Partitions: []Partition{{Label: sp("gone")}}},
			want: []Entry{}},
		{name: "wipeTable drops what was there",
			disk:     Disk{WipeTable: true, Partitions: []Partition{{Label: sp("new"), SizeMiB: ip(10), ShouldExist: true}}},
			existing: []Entry{data},
			want:     []Entry{{Number: 1, Start: mib, End: 11*mib - 1, Label: "new", Type: LinuxFilesystemType}}},
		{name: "new partition goes into the largest free block",
			disk:     Disk{Partitions: []Partition{{Number: 2, ShouldExist: true}}},
			existing: []Entry{{Number: 1, Start: 100 * mib, End: 200*mib - 1, Type: LinuxFilesystemType}},
			want:     []Entry{{Number: 1, Start: 100 * mib, End: 200*mib - 1, Type: LinuxFilesystemType}, {Number: 2, Start: 200 * mib, End: gib.Sectors - 34, Type: LinuxFilesystemType}}},
		{name: "resize grows it in place to sizeMiB",
			disk:     Disk{Partitions: []Partition{{Number: 1, SizeMiB: ip(300), Resize: true, ShouldExist: true}}},
			existing: []Entry{data},
			want:     []Entry{{Number: 1, Start: mib, End: 301*mib - 1, Label: "data", Type: LinuxFilesystemType}}},
		{name: "resize by label with sizeMiB 0 fills up to the next partition",
			disk:     Disk{Partitions: []Partition{{Label: sp("data"), SizeMiB: ip(0), Resize: true, ShouldExist: true}}},
			existing: []Entry{data, {Number: 2, Start: 500 * mib, End: 600*mib - 1, Type: LinuxFilesystemType}},
			want:     []Entry{{Number: 1, Start: mib, End: 500*mib - 1, Label: "data", Type: LinuxFilesystemType}, {Number: 2, Start: 500 * mib, End: 600*mib - 1, Type: LinuxFilesystemType}}},
		{name: "resize fills the space of a partition deleted after it in the list",
			disk:     Disk{Partitions: []Partition{{Number: 1, SizeMiB: ip(0), Resize: true, ShouldExist: true}, {Number: 2, WipeEntry: true}}},
			existing: []Entry{data, {Number: 2, Start: 500 * mib, End: 600*mib - 1, Type: LinuxFilesystemType}},
			want:     []Entry{{Number: 1, Start: mib, End: gib.Sectors - 34, Label: "data", Type: LinuxFilesystemType}}},
		{name: "resize to the size it has keeps it",
			disk:     Disk{Partitions: []Partition{{Number: 1, SizeMiB: ip(100), Resize: true, ShouldExist: true}}},
			existing: []Entry{data},
			want:     []Entry{data}},
		{name: "resize without sizeMiB keeps it",
			disk:     Disk{Partitions: []Partition{{Number: 1, Resize: true, ShouldExist: true}}},
			existing: []Entry{data},
			want:     []Entry{data}},
		{name: "resize never shrinks",
			disk:     Disk{Partitions: []Partition{{Number: 1, SizeMiB: ip(50), Resize: true, ShouldExist: true}}},
			existing: []Entry{data},
			err:      "resize would shrink it from 100 to 50 MiB: Pith only grows partitions"},
		{name: "resize never shrinks, wipePartitionEntry or not",
			disk:     Disk{Partitions: []Partition{{Number: 1, SizeMiB: ip(50), Resize: true, WipeEntry: true, ShouldExist: true}}},
			existing: []Entry{data},
			err:      "Pith only grows partitions"},
		{name: "resize past the next partition",
			disk:     Disk{Partitions: []Partition{{Number: 1, SizeMiB: ip(600), Resize: true, ShouldExist: true}}},
			existing: []Entry{data, {Number: 2, Start: 500 * mib, End: 600*mib - 1, Type: LinuxFilesystemType}},
			err:      "resize to 600 MiB does not fit: 499 MiB from its start"},
		{name: "resize of a partition of another type",
			disk:     Disk{Partitions: []Partition{{Number: 1, SizeMiB: ip(200), TypeGUID: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", Resize: true, ShouldExist: true}}},
			existing: []Entry{data},
			err:      "which resize does not change (only the size)"},
		{name: "resize of an absent partition creates it",
			disk: Disk{Partitions: []Partition{{Number: 3, Label: sp("new"), SizeMiB: ip(10), Resize: true, ShouldExist: true}}},
			want: []Entry{{Number: 3, Start: mib, End: 11*mib - 1, Label: "new", Type: LinuxFilesystemType}}},
		{name: "sizeMiB 0 on a partition that does not fill its space is a mismatch (Ignition's)",
			disk:     Disk{Partitions: []Partition{{Number: 1, SizeMiB: ip(0), ShouldExist: true}}},
			existing: []Entry{data},
			err:      "it has 204800 sectors, not the free space after it (sizeMiB 0); set wipePartitionEntry to replace it, or resize to grow it"},
		{name: "sizeMiB 0 on a partition that fills its space matches",
			disk:     Disk{Partitions: []Partition{{Label: sp("data"), SizeMiB: ip(0), ShouldExist: true}}},
			existing: []Entry{{Number: 1, Start: mib, End: gib.Sectors - 34, Label: "data", Type: LinuxFilesystemType}},
			want:     []Entry{{Number: 1, Start: mib, End: gib.Sectors - 34, Label: "data", Type: LinuxFilesystemType}}},
		{name: "too big",
			disk: Disk{Partitions: []Partition{{SizeMiB: ip(2000), ShouldExist: true}}},
			err:  "does not fit"},
		{name: "start inside a used partition",
			disk:     Disk{Partitions: []Partition{{Number: 2, StartMiB: ip(50), ShouldExist: true}}},
			existing: []Entry{data},
			err:      "not in free space"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.disk.Device = "/dev/vdb"
			got, _, err := Layout(tc.disk, tc.existing, gib)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Number != w.Number || g.Start != w.Start || g.End != w.End || g.Label != w.Label || g.Type != w.Type {
					t.Errorf("partition %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

// Each change Layout makes is one record for the log, naming the
// partition by disk, number and label.
func TestLayoutChanges(t *testing.T) {
	data := Entry{Number: 1, Start: 2048, End: 101*2048 - 1, Type: LinuxFilesystemType, Label: "data"}
	for _, tc := range []struct {
		name string
		disk Disk
		want []string
	}{
		{"created", Disk{Partitions: []Partition{{Label: sp("new"), SizeMiB: ip(10), ShouldExist: true}}},
			[]string{"partition created disk=/dev/vdb number=2 label=new size_mib=10 start_mib=101"}},
		{"kept", Disk{Partitions: []Partition{{Label: sp("data"), ShouldExist: true}}},
			[]string{"partition kept, as wanted disk=/dev/vdb number=1 label=data"}},
		{"replaced", Disk{Partitions: []Partition{{Number: 1, SizeMiB: ip(200), WipeEntry: true, ShouldExist: true}}},
			[]string{"partition replaced disk=/dev/vdb number=1 why=it has 204800 sectors, not 200 MiB", "partition created disk=/dev/vdb number=1 size_mib=200 start_mib=1"}},
		{"grown", Disk{Partitions: []Partition{{Label: sp("data"), SizeMiB: ip(150), Resize: true, ShouldExist: true}}},
			[]string{"partition grown in place disk=/dev/vdb number=1 label=data from_mib=100 to_mib=150"}},
		{"deleted", Disk{Partitions: []Partition{{Number: 1, WipeEntry: true}}},
			[]string{"partition deleted disk=/dev/vdb number=1"}},
		{"table wiped", Disk{WipeTable: true},
			[]string{"wiping the partition table disk=/dev/vdb partitions=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.disk.Device = "/dev/vdb"
			_, changes, err := Layout(tc.disk, []Entry{data}, gib)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range changes {
				line := c.Msg
				for _, a := range c.Attrs {
					line += " " + a.String()
				}
				got = append(got, line)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("changes\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
