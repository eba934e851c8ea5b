package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/layout"
)

func TestRoundTrip(t *testing.T) {
	tb, _ := layout.New(4*layout.GiB, "s")
	m := &Manifest{Schema: SchemaVersion, Version: "1.0", Platform: "qemu",
		Inputs:        Inputs{Suite: "bookworm", SourceDateEpoch: 1, Formats: []string{"raw"}},
		KernelCmdline: map[string]string{"a": "x"},
		Disk:          Disk{Size: tb.DiskSize, SectorSize: 512, GUID: tb.DiskGUID}}
	for _, p := range tb.Partitions {
		m.Disk.Partitions = append(m.Disk.Partitions, Partition{Partition: p, Attributes: "0000000000000000"})
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"label": "USR-A"`, `"number": 9`, `"type_guid": "3884DD41-8582-4404-B9A8-E9B84F2DF50E"`, `"offset": 1048576`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("manifest lacks %s", want)
		}
	}
	b2, _ := m.Encode()
	if string(b) != string(b2) {
		t.Error("encoding not stable")
	}
	path := filepath.Join(t.TempDir(), FileName)
	os.WriteFile(path, b, 0o644)
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := got.Partition("ROOT"); !ok || p.Number != 9 || p.GUID != tb.MustLabel("ROOT").GUID {
		t.Errorf("ROOT after round trip: %+v", p)
	}
	os.WriteFile(path, []byte(`{"schema": 99}`), 0o644)
	if _, err := Read(path); err == nil {
		t.Error("unknown schema accepted")
	}
	n, sum, err := HashFile(path)
	if err != nil || n != 14 || len(sum) != 64 {
		t.Errorf("HashFile = %d %s %v", n, sum, err)
	}
}

func TestHashFileSparse(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		size   int64
		writes map[int64]string
	}{
		{"empty", 0, nil},
		{"all hole", 5 << 20, nil},
		{"data at start", 3 << 20, map[int64]string{0: "abc"}},
		{"data in the middle and end", 9 << 20, map[int64]string{4 << 20: "x", 9<<20 - 1: "y"}},
		{"data after a hole", 2<<20 + 17, map[int64]string{1 << 20: "z"}},
	}
	for _, tc := range tests {
		path := filepath.Join(dir, tc.name)
		f, _ := os.Create(path)
		f.Truncate(tc.size)
		for off, s := range tc.writes {
			f.WriteAt([]byte(s), off)
		}
		f.Close()
		content, _ := os.ReadFile(path)
		want := sha256.Sum256(content)
		n, got, err := HashFile(path)
		if err != nil || n != tc.size || got != hex.EncodeToString(want[:]) {
			t.Errorf("%s: HashFile = %d %s %v, want %d %x", tc.name, n, got, err, tc.size, want)
		}
	}
}

// Boot loaders are an optional field of schema 1: a manifest from before
// them reads with none, one without them encodes as before, and one with
// them is still schema 1 (encoding/json readers of older releases skip a
// field they do not know).
func TestBootLoadersCompatible(t *testing.T) {
	bl := []BootLoader{{Boot: "uefi", File: "ESP EFI/BOOT/BOOTX64.EFI", Version: "2.12-1~bpo12+1",
		Packages: []BootPackage{{Name: "grub-efi-amd64-bin", Version: "2.12-1~bpo12+1", Arch: "amd64", Origin: "bookworm-backports"}}}}
	tests := []struct {
		name    string
		json    string
		want    []BootLoader
		encoded string // in the re-encoded manifest ("" : no boot_loaders key)
	}{
		{"before boot loaders were recorded", `{"schema": 1, "version": "1.0"}`, nil, ""},
		{"with them", `{"schema": 1, "version": "1.1", "boot_loaders": [{"boot": "uefi", "file": "ESP EFI/BOOT/BOOTX64.EFI", "grub_version": "2.12-1~bpo12+1",
			"packages": [{"name": "grub-efi-amd64-bin", "version": "2.12-1~bpo12+1", "arch": "amd64", "origin": "bookworm-backports"}]}]}`, bl,
			`"boot_loaders": [`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			os.WriteFile(path, []byte(tt.json), 0o644)
			m, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m.BootLoaders, tt.want) {
				t.Errorf("boot loaders %+v, want %+v", m.BootLoaders, tt.want)
			}
			b, _ := m.Encode()
			if has := strings.Contains(string(b), `"boot_loaders"`); has != (tt.encoded != "") || tt.encoded != "" && !strings.Contains(string(b), tt.encoded) {
				t.Errorf("encoded:\n%s\nwant boot_loaders %q", b, tt.encoded)
			}
		})
	}
}
