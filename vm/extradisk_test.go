package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestExtraDiskSizes starts a "QEMU" that is false(1): Start creates the
// blank disks and writes the command line before it runs QEMU.
func TestExtraDiskSizes(t *testing.T) {
	dir := t.TempDir()
	// Left over from an earlier boot of the node: must come back blank.
	if err := os.WriteFile(filepath.Join(dir, "extra1.img"), []byte("old data"), 0o644); err != nil {
		t.Fatal(err)
	}
	given := make([]string, 1, 4) // spare capacity the nodes must not share
	given[0] = "/given/vdb.img"
	cfg := Config{QEMU: "false", Forwards: []int{}, ExtraDisks: given,
		ExtraDiskSizes: []int64{1 << 30, 3 << 20}}
	if _, err := Start(context.Background(), cfg, dir); err == nil || !strings.Contains(err.Error(), "QEMU exited") {
		t.Fatalf("Start with false(1) as QEMU: %v", err)
	}
	for i, want := range cfg.ExtraDiskSizes {
		p := filepath.Join(dir, fmt.Sprintf("extra%d.img", i+1))
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != want || st.Sys().(*syscall.Stat_t).Blocks != 0 {
			t.Errorf("%s: %d bytes, %d blocks allocated; want %d, sparse and blank", p, st.Size(), st.Sys().(*syscall.Stat_t).Blocks, want)
		}
	}
	cmdline, err := os.ReadFile(filepath.Join(dir, "qemu.cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"file=/given/vdb.img -device virtio-blk-pci,drive=extra1,serial=pith-extra-1,addr=0x10",
		"file=" + dir + "/extra1.img -device virtio-blk-pci,drive=extra2,serial=pith-extra-2,addr=0x11",
		"file=" + dir + "/extra2.img -device virtio-blk-pci,drive=extra3,serial=pith-extra-3,addr=0x12",
	} {
		if !strings.Contains(string(cmdline), w) {
			t.Errorf("qemu.cmdline lacks %q:\n%s", w, cmdline)
		}
	}
	if spare := given[:cap(given)]; spare[1] != "" {
		t.Errorf("Start appended into the caller's ExtraDisks array: %q", spare)
	}
}

func TestInfoExtraDisks(t *testing.T) {
	f := filepath.Join(t.TempDir(), "extra1.img")
	if err := os.WriteFile(f, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Machine{Config: Config{Name: "node1", ExtraDisks: []string{f, "/gone.img"}}}
	got := m.Info().ExtraDisks
	want := []DiskInfo{{Serial: "pith-extra-1", File: f, Size: 4096}, {Serial: "pith-extra-2", File: "/gone.img"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Info().ExtraDisks = %+v, want %+v", got, want)
	}
}
