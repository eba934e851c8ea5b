package bootloader_test

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/rootfs"
)

// The UEFI GRUB's grub-emu for the package's tests, fetched once per test
// binary (rootfs.FetchGrubEmu: Debian's mirror once, then the cache).
var uefiEmu struct {
	once sync.Once
	emu  rootfs.GrubEmu
	err  error
}

func init() {
	bootloader.UEFIGrubEmu = func(t *testing.T) func(args ...string) *exec.Cmd {
		t.Helper()
		uefiEmu.once.Do(func() {
			work, err := os.MkdirTemp("", "grub-emu-")
			if err != nil {
				uefiEmu.err = err
				return
			}
			defer os.RemoveAll(work)
			uefiEmu.emu, uefiEmu.err = rootfs.TestGrubEmu(context.Background(), work, t.Logf)
		})
		if uefiEmu.err != nil {
			t.Fatal(uefiEmu.err)
		}
		return func(args ...string) *exec.Cmd { return uefiEmu.emu.Command(context.Background(), args...) }
	}
}
