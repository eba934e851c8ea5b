package channels

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

func randomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// smallChange is base with bytes inserted early (shifting everything after)
// and a few KiB overwritten later: a typical small update of a USR image.
func smallChange(base []byte) []byte {
	t := append([]byte(nil), base[:1<<20]...)
	t = append(t, randomBytes(99, 1000)...)
	t = append(t, base[1<<20:]...)
	copy(t[5<<20:], randomBytes(98, 4096))
	return t
}

func TestDeltaRoundTrip(t *testing.T) {
	base := randomBytes(1, 8<<20) // incompressible, like a squashfs
	target := smallChange(base)
	dir := t.TempDir()
	p, st, err := BuildDelta(bytes.NewReader(base), bytes.NewReader(target), filepath.Join(dir, "d"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("delta %d bytes for a %d-byte USR: %d of %d chunks reused", p.Size, len(target), st.Reused, st.Chunks)
	if p.Size*10 > int64(len(target)) {
		t.Fatalf("delta of %d bytes is not 10x smaller than the %d-byte payload", p.Size, len(target))
	}
	if err := VerifyBase(bytes.NewReader(base), p); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "usr-b")
	os.WriteFile(out, make([]byte, 10<<20), 0o600)
	if _, err := ApplyDelta(context.Background(), filepath.Join(dir, "d"), p, bytes.NewReader(base), Target{Path: out}, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got[:len(target)], target) {
		t.Fatal("rebuilt USR differs from the target")
	}

	// Another base: refused before anything is written.
	other := append([]byte(nil), base...)
	other[123] ^= 1
	if err := VerifyBase(bytes.NewReader(other), p); !errors.Is(err, ErrBaseMismatch) {
		t.Fatalf("wrong base: %v", err)
	}
	// Applied anyway, the result's hash catches it.
	if _, err := ApplyDelta(context.Background(), filepath.Join(dir, "d"), p, bytes.NewReader(other[:len(other)-1<<20]), Target{Path: out}, nil); err == nil {
		t.Fatal("delta applied onto a short base")
	}
	// A corrupted delta file fails its hash.
	d, _ := os.ReadFile(filepath.Join(dir, "d"))
	d[len(d)/2] ^= 1
	os.WriteFile(filepath.Join(dir, "bad"), d, 0o644)
	if _, err := ApplyDelta(context.Background(), filepath.Join(dir, "bad"), p, bytes.NewReader(base), Target{Path: out}, nil); err == nil {
		t.Fatal("corrupted delta applied")
	}
}

func TestPublishWithDelta(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t)
	base := randomBytes(1, 6<<20)
	for _, r := range []struct {
		version, from string
		usr           []byte
	}{{"1.0.0", "", base}, {"1.1.0", "1.0.0", smallChange(base)}} {
		m, err := Publish(dir, Release{Channel: "stable", Version: r.version, Platform: "linux/amd64", DeltaFrom: r.from,
			Payloads: []PayloadSource{bytesSource(PayloadUSR, "usr", r.usr)}}, []ed25519.PrivateKey{key}, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		d, ok := m.Payload(PayloadUSRDelta)
		if ok != (r.from != "") {
			t.Fatalf("%s: delta present %v", r.version, ok)
		}
		if ok {
			full, _ := m.Payload(PayloadUSR)
			if d.BaseVersion != "1.0.0" || d.UncompressedSHA256 != full.UncompressedSHA256 || d.Size*10 > full.Size {
				t.Fatalf("delta %+v, full %+v", d, full)
			}
			// The signed manifest with its delta entry verifies.
			body, _ := os.ReadFile(filepath.Join(dir, "channels", "stable.json"))
			sig, _ := os.ReadFile(filepath.Join(dir, "channels", "stable.json.sig"))
			if _, err := Verify(body, sig, Policy{Keys: NewKeyring(pubOf(key)), Running: "1.0.0"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := Publish(dir, Release{Channel: "stable", Version: "1.2.0", Platform: "linux/amd64", DeltaFrom: "0.9.0",
		Payloads: []PayloadSource{bytesSource(PayloadUSR, "usr", base)}}, []ed25519.PrivateKey{key}, nil); err == nil {
		t.Fatal("delta from a version not in the repository accepted")
	}
}
