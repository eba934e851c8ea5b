package channels

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestWritePayloadPaths writes payloads through the O_DIRECT path (aligned
// region, when the test's filesystem supports it) and the page-cache path
// (unaligned region), with and without a partial last block, raw and zstd,
// and checks the target byte for byte, including what lies around the region.
func TestWritePayloadPaths(t *testing.T) {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, make([]byte, directAlign), 0o600); err != nil {
		t.Fatal(err)
	}
	directOK := openDirect(Target{Path: probe}, os.O_RDONLY) != nil
	t.Logf("O_DIRECT on the test's filesystem: %v", directOK)

	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name   string
		size   int
		offset int64
		zstd   bool
		direct bool
	}{
		{"aligned region, whole blocks", 3*writeChunk + 8192, 1 << 20, false, directOK},
		{"aligned region, partial last block", writeChunk + 5000, 8192, false, directOK},
		{"aligned region, smaller than a block", 100, 4096, false, directOK},
		{"unaligned region", 2*writeChunk + 777, 512, false, false},
		{"zstd, aligned", writeChunk + 12345, 0, true, directOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := make([]byte, tt.size)
			for i := 0; i < len(data)/2; i++ { // half random, half zeros: zstd shrinks it
				data[i] = byte(rng.Uint32())
			}
			src := filepath.Join(t.TempDir(), "usr")
			var p Payload
			var err error
			if tt.zstd {
				p, err = BuildPayload(bytes.NewReader(data), src)
			} else {
				p, err = StoreRawPayload(bytes.NewReader(data), src)
			}
			if err != nil {
				t.Fatal(err)
			}
			p.Name = PayloadUSR
			old := bytes.Repeat([]byte{0xee}, int(tt.offset)+tt.size+3*directAlign)
			target := filepath.Join(t.TempDir(), "usr-b")
			if err := os.WriteFile(target, old, 0o600); err != nil {
				t.Fatal(err)
			}
			var last int64
			st, err := WritePayload(context.Background(), src, p, Target{Path: target, Offset: tt.offset}, func(done, total int64) { last = done })
			if err != nil {
				t.Fatal(err)
			}
			if st.Direct != tt.direct || st.Bytes != int64(tt.size) || last != int64(tt.size) {
				t.Errorf("stats %+v, progress %d; want direct %v, %d bytes", st, last, tt.direct, tt.size)
			}
			got, _ := os.ReadFile(target)
			end := int(tt.offset) + tt.size
			if !bytes.Equal(got[tt.offset:end], data) {
				t.Error("the region does not hold the payload")
			}
			if !bytes.Equal(got[:tt.offset], old[:tt.offset]) || !bytes.Equal(got[end:], old[end:]) {
				t.Error("bytes outside the region changed")
			}
		})
	}
}

// The write does not hash the stream; the read-back must still refuse
// content that differs from the signed hash, and a stream longer or
// shorter than the manifest says.
func TestWritePayloadRefuses(t *testing.T) {
	data := bytes.Repeat([]byte("pith"), 3000)
	src := filepath.Join(t.TempDir(), "usr")
	good, err := StoreRawPayload(bytes.NewReader(data), src)
	if err != nil {
		t.Fatal(err)
	}
	good.Name = PayloadUSR
	other := sha256.Sum256([]byte("something else"))
	tests := []struct {
		name string
		edit func(*Payload)
		want error
	}{
		{"content differs from the signed hash", func(p *Payload) {
			p.SHA256 = hex.EncodeToString(other[:])
			p.UncompressedSHA256 = p.SHA256
		}, ErrHash},
		{"stream longer than the manifest", func(p *Payload) { p.Size--; p.UncompressedSize-- }, ErrSize},
		{"stream shorter than the manifest", func(p *Payload) { p.Size++; p.UncompressedSize++ }, ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "usr-b")
			if err := os.WriteFile(target, make([]byte, 1<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			p := good
			tt.edit(&p)
			_, err := WritePayload(context.Background(), src, p, Target{Path: target}, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}
