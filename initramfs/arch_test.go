package initramfs

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheckArch(t *testing.T) {
	self, err := os.Executable() // this test binary: the host's architecture
	if err != nil {
		t.Fatal(err)
	}
	fake := func(machine byte) string {
		p := filepath.Join(t.TempDir(), "init")
		hdr := make([]byte, 64)
		copy(hdr, "\x7fELF\x02\x01\x01")
		hdr[18] = machine
		os.WriteFile(p, hdr, 0o755)
		return p
	}
	tests := []struct {
		name, path, arch string
		ok               bool
	}{
		{"x86-64 init, amd64 image", fake(62), "amd64", true},
		{"aarch64 init, arm64 image", fake(183), "arm64", true},
		{"x86-64 init, arm64 image", fake(62), "arm64", false},
		{"aarch64 init, amd64 image", fake(183), "amd64", false},
		{"unknown arch", self, "mips", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkArch(tt.path, tt.arch); (err == nil) != tt.ok {
				t.Fatalf("checkArch: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
