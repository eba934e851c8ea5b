package channels

import (
	"sort"
	"testing"
)

func TestVersionOrder(t *testing.T) {
	// Oldest first; every pair is checked both ways.
	ordered := []string{
		"0.1.0-dev",
		"0.1.0",
		"v0.1.1-alpha",
		"0.1.1-alpha.1",
		"0.1.1-alpha.beta",
		"0.1.1-beta.2",
		"0.1.1-beta.11",
		"0.1.1-rc.1",
		"0.1.1",
		"v0.1.1-1-gdeadbee",
		"v0.1.1-12-g0123abcd",
		"0.2",
		"1.0.0",
		"1.0.0.1",
		"1.10.0",
		"1632.3.0",
		"2026.11.25",
	}
	for i := range ordered {
		for j := range ordered {
			c, err := CompareVersions(ordered[i], ordered[j])
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if c != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", ordered[i], ordered[j], c, want)
			}
		}
	}
	shuffled := append([]string(nil), ordered...)
	sort.Slice(shuffled, func(i, j int) bool { return shuffled[i] > shuffled[j] })
	sort.SliceStable(shuffled, func(i, j int) bool {
		return MustParseVersion(shuffled[i]).Compare(MustParseVersion(shuffled[j])) < 0
	})
	for i := range ordered {
		if shuffled[i] != ordered[i] {
			t.Fatalf("sorted %v", shuffled)
		}
	}
}

func TestVersionEqual(t *testing.T) {
	for _, pair := range [][2]string{
		{"1.2.3", "v1.2.3"},
		{"1.2.3", "1.2.3+build.7"},
		{"1.2", "1.2.0"},
		{"v1.2.3-4-gabcdef0", "v1.2.3-4-g1234567-dirty"}, // same describe distance
		{"1.2.3-dirty", "1.2.3"},
	} {
		if c, err := CompareVersions(pair[0], pair[1]); err != nil || c != 0 {
			t.Errorf("Compare(%s, %s) = %d, %v; want equal", pair[0], pair[1], c, err)
		}
	}
}

func TestVersionRejects(t *testing.T) {
	for _, s := range []string{"", "v", "c39b464", "1..2", "01.2.3", "1.2.3.4.5", "1.2.x", "1.2.3-", "1.2.3-a..b", "1.2.3-a_b"} {
		if _, err := ParseVersion(s); err == nil {
			t.Errorf("ParseVersion(%q) accepted", s)
		}
	}
	if !MustParseVersion("1.0.0-3-gabc1234-dirty").Dirty() {
		t.Error("dirty not detected")
	}
}
