package rootfs

import (
	"debug/elf"
	"testing"

	"github.com/pith-os/pith/image/config"
)

func TestCheckMachine(t *testing.T) {
	tests := []struct {
		machine elf.Machine
		arch    string
		err     string
	}{
		{elf.EM_X86_64, "amd64", ""},
		{elf.EM_X86_64, "", ""},
		{elf.EM_AARCH64, "arm64", ""},
		{elf.EM_AARCH64, "amd64", "/b/pithd is built for EM_AARCH64, the image is amd64: build with GOARCH=amd64 (make bin)"},
		{elf.EM_X86_64, "arm64", "/b/pithd is built for EM_X86_64, the image is arm64: build with GOARCH=arm64 (make bin-arm64, which builds them into _out/bin/linux_arm64)"},
	}
	for _, tt := range tests {
		err := CheckMachine("/b/pithd", tt.machine, tt.arch)
		if (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("CheckMachine(%v, %q) = %v, want %q", tt.machine, tt.arch, err, tt.err)
		}
	}
}

// An arm64 tree is cached apart from amd64's.
func TestDebianKeyArch(t *testing.T) {
	amd, arm := config.Default(), config.Default()
	arm.SetArch("arm64")
	arm.KernelPackage = amd.KernelPackage
	if debianKey(amd, "d") == debianKey(arm, "d") {
		t.Fatal("amd64 and arm64 share a cached tree")
	}
}
