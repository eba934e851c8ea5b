package channels

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Benchmarks of the update's phases on a 64 MiB USR payload. Run:
//
//	go test -run '^$' -bench . -benchtime 3x ./channels/
//
// MB/s is of the uncompressed payload for build and write, of the
// compressed file for download and verify.
const benchSize = 64 << 20

func benchRepo(b *testing.B) (*testRepo, Payload) {
	b.Helper()
	tr := newTestRepo(b, "1.1.0", benchSize)
	usr, _ := tr.m.Payload(PayloadUSR)
	return tr, usr
}

func BenchmarkBuildPayload(b *testing.B) {
	data := testPayloadData(1, benchSize)
	dir := b.TempDir()
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		src := bytesSource("usr", "usr", data)
		r, _ := src.Open()
		if _, err := BuildPayload(r, filepath.Join(dir, "usr")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDownload(b *testing.B) {
	tr, usr := benchRepo(b)
	ts := tr.serve(b, nil)
	c := tr.client(b, ts.URL)
	b.SetBytes(usr.Size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		if _, err := c.Download(context.Background(), usr, dir); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(dir)
	}
}

func BenchmarkVerifyFile(b *testing.B) {
	tr, usr := benchRepo(b)
	src := filepath.Join(tr.dir, filepath.FromSlash(usr.Path))
	b.SetBytes(usr.Size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := VerifyFile(src, usr); err != nil {
			b.Fatal(err)
		}
	}
}

// benchTarget is where the write benchmarks write: PITH_BENCH_TARGET (a
// spare partition in a VM, e.g. /dev/disk/by-partlabel/USR-B: its content
// is destroyed) or a temporary file. PITH_BENCH_MIB sets the size (64).
func benchTarget(b *testing.B) (string, int64) {
	b.Helper()
	size := int64(benchSize)
	if v := os.Getenv("PITH_BENCH_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("PITH_BENCH_MIB=%q: want a positive number of MiB", v)
		}
		size = int64(n) << 20
	}
	if t := os.Getenv("PITH_BENCH_TARGET"); t != "" {
		return t, size
	}
	target := filepath.Join(b.TempDir(), "usr-b")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(target, size+(1<<20)); err != nil {
		b.Fatal(err)
	}
	return target, size
}

// BenchmarkWritePayload writes a raw (incompressible, like a squashfs USR)
// payload the way the update agent does. In a VM, against dd's speed:
//
//	CGO_ENABLED=0 go test -c -o channels.test ./channels/
//	(copy to the VM, then as root:)
//	TMPDIR=/var/tmp PITH_BENCH_TARGET=/dev/disk/by-partlabel/USR-B PITH_BENCH_MIB=160 \
//	  ./channels.test -test.run '^$' -test.bench 'WritePayload|DDBaseline' -test.benchtime 3x
//	dd if=/dev/zero of=/dev/disk/by-partlabel/USR-B bs=1M count=160 conv=fsync
func BenchmarkWritePayload(b *testing.B) {
	target, size := benchTarget(b)
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{7}).Read(data)
	src := filepath.Join(b.TempDir(), "usr")
	usr, err := StoreRawPayload(bytes.NewReader(data), src)
	if err != nil {
		b.Fatal(err)
	}
	usr.Name = PayloadUSR
	data = nil
	b.SetBytes(size)
	b.ResetTimer()
	var write, readBack float64
	direct := false
	for i := 0; i < b.N; i++ {
		st, err := WritePayload(context.Background(), src, usr, Target{Path: target}, nil)
		if err != nil {
			b.Fatal(err)
		}
		write += st.Write
		readBack += st.ReadBack
		direct = st.Direct
	}
	b.ReportMetric(float64(size)*float64(b.N)/1e6/write, "write-MB/s")
	b.ReportMetric(float64(size)*float64(b.N)/1e6/readBack, "readback-MB/s")
	if direct {
		b.ReportMetric(1, "direct")
	}
}

// BenchmarkDDBaseline does what `dd if=/dev/zero bs=1M conv=fsync` does
// (1 MiB buffered writes, one fsync) to the same target, as the yardstick
// for the write phase.
func BenchmarkDDBaseline(b *testing.B) {
	target, size := benchTarget(b)
	buf := make([]byte, 1<<20)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := os.OpenFile(target, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
