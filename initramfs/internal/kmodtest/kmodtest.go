// Package kmodtest makes fake kernel modules for tests: tiny ELF objects
// whose .modinfo section carries the dependency list, as real ones do.
package kmodtest

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Module returns a minimal ELF64 object with a .modinfo section, which
// is all depmod (and Load) read.
func Module(modinfo string) []byte {
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	info := []byte(modinfo)
	const ehsize, shentsize = 64, 64
	infoOff := ehsize
	strOff := infoOff + len(info)
	shOff := (strOff + len(shstr) + 7) &^ 7
	b := make([]byte, shOff+3*shentsize)
	copy(b, "\x7fELF\x02\x01\x01")
	le := binary.LittleEndian
	le.PutUint16(b[16:], 1)  // ET_REL
	le.PutUint16(b[18:], 62) // x86-64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[40:], uint64(shOff))
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[58:], shentsize)
	le.PutUint16(b[60:], 3)
	le.PutUint16(b[62:], 2)
	copy(b[infoOff:], info)
	copy(b[strOff:], shstr)
	sh := func(i int, name, typ uint32, off, size int) {
		s := b[shOff+i*shentsize:]
		le.PutUint32(s[0:], name)
		le.PutUint32(s[4:], typ)
		le.PutUint64(s[24:], uint64(off))
		le.PutUint64(s[32:], uint64(size))
		le.PutUint64(s[48:], 1)
	}
	sh(1, 1, 1, infoOff, len(info))  // .modinfo, PROGBITS
	sh(2, 10, 3, strOff, len(shstr)) // .shstrtab, STRTAB
	return b
}

// WriteTree lays out a modules directory without modules.dep, as a kernel
// package ships it before depmod runs: virtio_blk (xz) needs virtio and
// virtio_ring; dm-verity (zstd) needs dm-bufio (gzip) and dm-mod.
func WriteTree(t testing.TB, dir string) {
	t.Helper()
	files := map[string]string{
		"kernel/drivers/virtio/virtio_ring.ko":  "license=GPL\x00depends=\x00",
		"kernel/drivers/virtio/virtio.ko":       "license=GPL\x00depends=virtio_ring\x00",
		"kernel/drivers/block/virtio_blk.ko.xz": "license=GPL\x00depends=virtio,virtio_ring\x00name=virtio_blk\x00",
		"kernel/drivers/md/dm-verity.ko.zst":    "depends=dm-bufio,dm-mod\x00",
		"kernel/drivers/md/dm-bufio.ko.gz":      "depends=\x00",
		"kernel/drivers/md/dm-mod.ko":           "\x00",
	}
	for rel, info := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data := compress(t, rel, Module(info))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func compress(t testing.TB, name string, data []byte) []byte {
	var b bytes.Buffer
	switch filepath.Ext(name) {
	case ".xz":
		w, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case ".zst":
		w, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case ".gz":
		w := gzip.NewWriter(&b)
		w.Write(data)
		w.Close()
	default:
		return data
	}
	return b.Bytes()
}
