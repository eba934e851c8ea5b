package fwcfg

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPortBase(t *testing.T) {
	for _, tc := range []struct {
		ioports string
		base    uint16
		ok      bool
	}{
		{"0000-0cf7 : PCI Bus 0000:00\n  0000-001f : dma1\n  0510-051b : QEMU0002:00\n  0600-067f : 0000:00:1f.0\n", 0x510, true},
		{"  0510-0511 : fw_cfg_io\n", 0x510, true},
		{"0000-0cf7 : PCI Bus 0000:00\n  0060-0060 : keyboard\n", 0, false},
		{"  zzzz-0511 : fw_cfg_io\n", 0, false},
		{"", 0, false},
	} {
		base, ok := portBase([]byte(tc.ioports))
		if base != tc.base || ok != tc.ok {
			t.Errorf("portBase(%q) = %#x, %v; want %#x, %v", tc.ioports, base, ok, tc.base, tc.ok)
		}
	}
}

// Without the kernel's word that fw_cfg sits on I/O ports (a root with no
// /proc/ioports, as on every host running these tests), Read never
// touches ports and reads the sysfs file.
func TestReadFallsBackToSysfs(t *testing.T) {
	root := t.TempDir()
	entry := filepath.Join(root, Dir, UserData)
	data := []byte("#cloud-config\n" + strings.Repeat("# padding\n", 2000))
	write := func(name, s string) {
		t.Helper()
		if err := os.MkdirAll(entry, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(entry, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := Read(root, UserData, 1<<20); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("absent entry: %v, want fs.ErrNotExist", err)
	}
	write("raw", string(data))
	write("size", "20014\n")
	write("key", "37\n")
	for _, tc := range []struct {
		name  string
		size  string // the size file
		limit uint64
		err   string // "" = reads data through sysfs
	}{
		{"sysfs", "20014\n", 1 << 20, ""},
		{"size file over the limit", "99999999\n", 1 << 20, "bytes, larger than 1 MiB"},
		{"no size file, data over the limit", "", 10000, "raw is larger than 0 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(filepath.Join(entry, "size"))
			if tc.size != "" {
				write("size", tc.size)
			}
			got, how, err := Read(root, UserData, tc.limit)
			if tc.err == "" {
				if err != nil || how != "sysfs" || string(got) != string(data) {
					t.Fatalf("Read = %d bytes via %q, %v", len(got), how, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Read: %v, want %q", err, tc.err)
			}
		})
	}
}

// ReadMetaData is the rule both pithd's datasource and the initramfs
// apply: absent is no meta-data, present must decode into Meta.
func TestReadMetaData(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  *string // the entry's raw file; nil: no entry
		ip   string  // PrivateIPv4 read
		err  string  // "" = no error
	}{
		{"absent", nil, "<nil>", ""},
		{"addresses", ptr(`{"private_ipv4": "10.0.2.15", "hostname": "q"}`), "10.0.2.15", ""},
		{"empty object", ptr(`{}`), "<nil>", ""},
		{"not JSON", ptr(`{not json`), "", "fw_cfg opt/org.pith/meta-data is not valid JSON metadata: invalid character"},
		{"empty", ptr(``), "", "not valid JSON metadata: unexpected end of JSON input"},
		{"wrong shape", ptr(`{"hostname": 5}`), "", "not valid JSON metadata: json: cannot unmarshal number"},
		{"bad address", ptr(`{"private_ipv4": "10.0.2"}`), "", "not valid JSON metadata: invalid IP address: 10.0.2"},
		{"over the limit", ptr(`{"hostname": "` + strings.Repeat("h", 100) + `"}`), "", "raw is larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.raw != nil {
				entry := filepath.Join(root, Dir, MetaData)
				if err := os.MkdirAll(entry, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(entry, "raw"), []byte(*tc.raw), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m, err := ReadMetaData(root, 64)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ReadMetaData: %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || m.PrivateIPv4.String() != tc.ip {
				t.Fatalf("ReadMetaData = %+v, %v; want private_ipv4 %s", m, err, tc.ip)
			}
		})
	}
}

func ptr(s string) *string { return &s }
