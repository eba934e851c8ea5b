package bootloader_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/config"
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
			cache, err := os.UserCacheDir()
			if err != nil {
				uefiEmu.err = err
				return
			}
			work, err := os.MkdirTemp("", "grub-emu-")
			if err != nil {
				uefiEmu.err = err
				return
			}
			defer os.RemoveAll(work)
			uefiEmu.emu, uefiEmu.err = rootfs.FetchGrubEmu(context.Background(), config.Default(), filepath.Join(cache, "pith"), work, t.Logf)
			if uefiEmu.err == nil {
				uefiEmu.err = uefiEmu.emu.Check(context.Background())
			}
		})
		if uefiEmu.err != nil {
			t.Fatalf("grub-emu of the images' UEFI GRUB (needs Debian's mirror once, then the cache): %v", uefiEmu.err)
		}
		return func(args ...string) *exec.Cmd { return uefiEmu.emu.Command(context.Background(), args...) }
	}
}
