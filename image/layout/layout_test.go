package layout

import (
	"strings"
	"testing"
)

func TestNewPlacesPartitions(t *testing.T) {
	tests := []struct {
		name     string
		disk     int64
		rootSize int64
	}{
		{"default 4GiB", 4 * GiB, 4*GiB - 2307*MiB - MiB},
		{"minimum", MinDiskSize(), MinRootSize},
		{"unaligned tail", 4*GiB + 512*7, 4*GiB - 2307*MiB - MiB},
		{"tail just fits", 4*GiB + MiB, 4*GiB - 2307*MiB},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := New(tc.disk, "seed")
			if err != nil {
				t.Fatal(err)
			}
			wantNums := []int{1, 2, 3, 4, 6, 9}
			wantStart := []int64{MiB, 129 * MiB, 131 * MiB, 1155 * MiB, 2179 * MiB, 2307 * MiB}
			if len(tb.Partitions) != len(wantNums) {
				t.Fatalf("%d partitions, want %d", len(tb.Partitions), len(wantNums))
			}
			for i, p := range tb.Partitions {
				if p.Number != wantNums[i] || p.Start != wantStart[i] {
					t.Errorf("partition %d: number %d start %d, want %d at %d", i, p.Number, p.Start, wantNums[i], wantStart[i])
				}
				if p.Start%Align != 0 || p.Size%Align != 0 {
					t.Errorf("%s not aligned", p.Label)
				}
			}
			root := tb.MustLabel(LabelRoot)
			if root.Size != tc.rootSize {
				t.Errorf("ROOT size %d, want %d", root.Size, tc.rootSize)
			}
			if end := root.Start + root.Size; end > tc.disk-33*512 {
				t.Errorf("ROOT ends at %d, overlapping the backup GPT of a %d-byte disk", end, tc.disk)
			}
			if got := root.LastLBA() - root.FirstLBA() + 1; int64(got)*SectorSize != root.Size {
				t.Errorf("LBA range %d sectors for %d bytes", got, root.Size)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		disk int64
		want string
	}{
		{"too small", 2 * GiB, "disk too small for the content"},
		{"one byte short", MinDiskSize() - 512, "at least 2564MiB needed"},
		{"not sectors", 4*GiB + 1, "not a multiple of 512"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.disk, "seed")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%d) = %v, want error containing %q", tc.disk, err, tc.want)
			}
		})
	}
}

func TestSpecsMatchDesign(t *testing.T) {
	want := map[int]struct{ label, typ string }{
		1: {"EFI-SYSTEM", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
		2: {"BIOS-BOOT", "21686148-6449-6E6F-744E-656564454649"},
		3: {"USR-A", "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6"},
		4: {"USR-B", "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6"},
		6: {"OEM", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
		9: {"ROOT", "3884DD41-8582-4404-B9A8-E9B84F2DF50E"},
	}
	for _, s := range Specs {
		w, ok := want[s.Number]
		if !ok || w.label != s.Label || w.typ != s.Type {
			t.Errorf("spec %d = %s %s, want %+v", s.Number, s.Label, s.Type, w)
		}
		delete(want, s.Number)
	}
	if len(want) != 0 {
		t.Errorf("missing partitions %v", want)
	}
}

func TestGUIDsDeterministic(t *testing.T) {
	a, _ := New(4*GiB, "inputs-1")
	b, _ := New(4*GiB, "inputs-1")
	c, _ := New(4*GiB, "inputs-2")
	seen := map[string]bool{a.DiskGUID: true}
	for i := range a.Partitions {
		if a.Partitions[i].GUID != b.Partitions[i].GUID {
			t.Errorf("%s: GUID differs for the same seed", a.Partitions[i].Label)
		}
		if a.Partitions[i].GUID == c.Partitions[i].GUID {
			t.Errorf("%s: GUID equal for different seeds", a.Partitions[i].Label)
		}
		if seen[a.Partitions[i].GUID] {
			t.Errorf("%s: GUID reused", a.Partitions[i].Label)
		}
		seen[a.Partitions[i].GUID] = true
		if g := a.Partitions[i].GUID; len(g) != 36 || g != strings.ToUpper(g) || g[14] != '5' {
			t.Errorf("GUID %q is not an upper-case v5 UUID", g)
		}
	}
	v1, v2 := DeriveVolumeID("s", "esp"), DeriveVolumeID("s", "esp")
	if v1 != v2 || v1 == DeriveVolumeID("t", "esp") || v1 == DeriveVolumeID("s", "oem") {
		t.Error("volume IDs not derived from the seed")
	}
}

func TestCheckFits(t *testing.T) {
	tb, _ := New(4*GiB, "s")
	root := tb.MustLabel(LabelRoot)
	tests := []struct {
		name    string
		content map[string]int64
		want    string
	}{
		{"fits", map[string]int64{LabelUSRA: 900 * MiB, LabelRoot: 10 * MiB}, ""},
		{"usr exact", map[string]int64{LabelUSRA: GiB}, ""},
		{"usr too big", map[string]int64{LabelUSRA: GiB + 1}, "USR-A content is 1 GiB, more than its 1 GiB partition"},
		{"root too big", map[string]int64{LabelRoot: root.Size + 5*MiB}, "disk too small for the content: ROOT needs"},
		{"root names size", map[string]int64{LabelRoot: root.Size + 5*MiB}, "at least 4101MiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tb.CheckFits(tc.content)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestHuman(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1536: "1.5 KiB", 128 * MiB: "128 MiB", 4 * GiB: "4 GiB", 2564 * MiB: "2.5 GiB"} {
		if got := Human(in); got != want {
			t.Errorf("Human(%d) = %q, want %q", in, got, want)
		}
	}
}
