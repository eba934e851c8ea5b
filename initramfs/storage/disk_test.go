package storage

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
)

// A disk without a readable partition table is partitioned only when it
// is blank or wipeTable is set: a whole-disk filesystem (or LVM, LUKS, a
// GPT with both copies damaged) is data, not an empty disk.
func TestPartitionDiskUnreadableTable(t *testing.T) {
	const size = 16 << 20
	for _, tc := range []struct {
		name string
		data map[int64]string // offset -> bytes written on the disk
		wipe bool
		err  string
	}{
		{"blank disk", nil, false, ""},
		{"superblock at the start", map[int64]string{1024 + 56: "\x53\xef"}, false, "not blank"},
		{"data at the end", map[int64]string{size - 4096: "md-superblock"}, false, "not blank"},
		{"data in the middle only", map[int64]string{size / 2: "x"}, false, ""},
		{"wipeTable replaces it", map[int64]string{0: "LUKS\xba\xbe"}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "disk.img")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(size); err != nil {
				t.Fatal(err)
			}
			for off, b := range tc.data {
				if _, err := f.WriteAt([]byte(b), off); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
			d := Disk{Device: "/dev/vdc", WipeTable: tc.wipe, Partitions: []Partition{{Label: sp("data"), ShouldExist: true}}}
			var log bytes.Buffer
			err = partitionDisk(d, p, slog.New(slog.NewTextHandler(&log, nil)))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "wipeTable") {
					t.Fatalf("partitionDisk = %v, want %q naming wipeTable", err, tc.err)
				}
				for off, b := range tc.data {
					got := make([]byte, len(b))
					f, _ := os.Open(p)
					_, _ = f.ReadAt(got, off)
					f.Close()
					if string(got) != b {
						t.Errorf("refused disk changed at %d: %q", off, got)
					}
				}
				if st, _ := os.ReadFile(p); strings.Contains(string(st[512:520]), "EFI PART") {
					t.Errorf("refused disk got a GPT")
				}
				return
			}
			if err != nil {
				t.Fatalf("partitionDisk: %v", err)
			}
			if want := `msg="partition created" disk=/dev/vdc number=1 label=data size_mib=14 start_mib=1`; !strings.Contains(log.String(), want) {
				t.Errorf("log %q lacks %q", &log, want)
			}
			dk, err := diskfs.Open(p, diskfs.WithOpenMode(diskfs.ReadOnly))
			if err != nil {
				t.Fatal(err)
			}
			defer dk.Close()
			if tb, err := dk.GetPartitionTable(); err != nil || tb.Type() != "gpt" || len(tb.GetPartitions()) == 0 {
				t.Errorf("after partitioning: %v, %v", tb, err)
			}
		})
	}
}
