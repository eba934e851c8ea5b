package channels

import (
	"context"
	"os"
	"path/filepath"
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

func BenchmarkWritePayload(b *testing.B) {
	tr, usr := benchRepo(b)
	src := filepath.Join(tr.dir, filepath.FromSlash(usr.Path))
	target := filepath.Join(b.TempDir(), "usr-b")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(target, benchSize+(1<<20)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(usr.UncompressedSize)
	b.ResetTimer()
	var write, readBack float64
	for i := 0; i < b.N; i++ {
		st, err := WritePayload(context.Background(), src, usr, Target{Path: target}, nil)
		if err != nil {
			b.Fatal(err)
		}
		write += st.Write
		readBack += st.ReadBack
	}
	b.ReportMetric(float64(usr.UncompressedSize)*float64(b.N)/1e6/write, "write-MB/s")
	b.ReportMetric(float64(usr.UncompressedSize)*float64(b.N)/1e6/readBack, "readback-MB/s")
}
