package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/pith-os/pith/initramfs/verity"
)

// verityUSR makes a USR payload the update agent accepts: fill laid out as
// a squashfs (its magic and bytes_used, 4 KiB blocks) with the dm-verity
// tree pith build appends, and the tree's root hash for the release.
func verityUSR(t *testing.T, fill []byte) ([]byte, string) {
	t.Helper()
	size := (int64(len(fill)) + verity.BlockSize - 1) / verity.BlockSize * verity.BlockSize
	fs := make([]byte, size)
	copy(fs, fill)
	copy(fs, "hsqs")
	binary.LittleEndian.PutUint64(fs[40:], uint64(size))
	p := filepath.Join(t.TempDir(), "usr")
	if err := os.WriteFile(p, fs, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root, err := verity.Format(f, size, []byte("pithd-test"), [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	usr, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return usr, root
}
