package channels

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func testKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func sampleManifest() *Manifest {
	h := strings.Repeat("ab", 32)
	return &Manifest{
		Schema: SchemaVersion, Channel: "stable", Version: "1.2.0",
		Released: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), MinVersion: "1.0.0",
		Expires:  sampleExpires,
		Platform: "linux/amd64",
		Payloads: []Payload{{Name: "usr", Path: "1.2.0/usr.zst", Compression: CompressionZstd,
			Size: 10, SHA256: h, UncompressedSize: 20, UncompressedSHA256: h}},
	}
}

// The sample manifest's expiry, and a time inside its validity that the
// tests check against (not the wall clock: the tests must not expire).
var (
	sampleExpires = time.Date(2027, 2, 23, 12, 0, 0, 0, time.UTC)
	sampleNow     = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
)

func TestVerify(t *testing.T) {
	key, other, next := testKey(t), testKey(t), testKey(t)
	good := func() ([]byte, []byte) {
		b, err := sampleManifest().Marshal()
		if err != nil {
			t.Fatal(err)
		}
		s, err := Sign(b, key)
		if err != nil {
			t.Fatal(err)
		}
		return b, s
	}
	resign := func(mut func(*Manifest)) func() ([]byte, []byte) {
		return func() ([]byte, []byte) {
			m := sampleManifest()
			mut(m)
			b, err := json.Marshal(m) // bypass Validate: a signer may sign junk
			if err != nil {
				t.Fatal(err)
			}
			s, _ := Sign(b, key)
			return b, s
		}
	}
	pol := Policy{Keys: NewKeyring(pubOf(key)), Channel: "stable", Platform: "linux/amd64", Running: "1.1.0", Now: sampleNow}
	tests := []struct {
		name  string
		input func() ([]byte, []byte)
		pol   Policy
		want  error // nil: accepted
	}{
		{"good", good, pol, nil},
		{"no running version check", good, Policy{Keys: pol.Keys, Now: sampleNow}, nil},
		{"tampered version", func() ([]byte, []byte) {
			b, s := good()
			return bytes.Replace(b, []byte(`"1.2.0"`), []byte(`"9.2.0"`), 1), s
		}, pol, ErrBadSignature},
		{"tampered hash byte", func() ([]byte, []byte) {
			b, s := good()
			i := bytes.Index(b, []byte("abab"))
			b[i] = 'c'
			return b, s
		}, pol, ErrBadSignature},
		{"truncated manifest", func() ([]byte, []byte) { b, s := good(); return b[:len(b)/2], s }, pol, ErrBadSignature},
		{"truncated signature file", func() ([]byte, []byte) { b, s := good(); return b, s[:len(s)-20] }, pol, ErrBadSignature},
		{"empty signature list", func() ([]byte, []byte) {
			b, _ := good()
			return b, []byte(`{"schema":1,"signatures":[]}`)
		}, pol, ErrBadSignature},
		{"signature of another key under our key id", func() ([]byte, []byte) {
			b, _ := good()
			s, _ := Sign(b, other)
			return b, bytes.ReplaceAll(s, []byte(KeyID(pubOf(other))), []byte(KeyID(pubOf(key))))
		}, pol, ErrBadSignature},
		{"unknown key", func() ([]byte, []byte) {
			b, _ := good()
			s, _ := Sign(b, other)
			return b, s
		}, pol, ErrUnknownKey},
		{"node trusts no key", good, Policy{Now: sampleNow}, ErrUnknownKey},
		{"rotation: signed by old and new, node trusts new", func() ([]byte, []byte) {
			b, _ := good()
			s, _ := Sign(b, key, next)
			return b, s
		}, Policy{Keys: NewKeyring(pubOf(next)), Now: sampleNow}, nil},
		{"rotation: signed by new only, node trusts both", func() ([]byte, []byte) {
			b, _ := good()
			s, _ := Sign(b, next)
			return b, s
		}, Policy{Keys: NewKeyring(pubOf(key), pubOf(next)), Now: sampleNow}, nil},
		{"replay of running version", good, Policy{Keys: pol.Keys, Running: "1.2.0", Now: sampleNow}, ErrNotNewer},
		{"downgrade", good, Policy{Keys: pol.Keys, Running: "1.3.0", Now: sampleNow}, ErrNotNewer},
		{"running older than min_version", good, Policy{Keys: pol.Keys, Running: "0.9.0", Now: sampleNow}, ErrTooOld},
		{"other platform", good, Policy{Keys: pol.Keys, Platform: "linux/arm64", Now: sampleNow}, ErrWrongPlatform},
		{"other channel", good, Policy{Keys: pol.Keys, Channel: "beta", Now: sampleNow}, ErrWrongChannel},
		{"expired", good, Policy{Keys: pol.Keys, Now: sampleExpires.Add(time.Second)}, ErrExpired},
		{"last second of validity", good, Policy{Keys: pol.Keys, Now: sampleExpires}, nil},
		{"expired, but a release tool allows it", good, Policy{Keys: pol.Keys, Now: sampleExpires.Add(time.Hour), AllowExpired: true}, nil},
		// An old signed manifest replayed: refused when it has expired
		// even though it is newer than the running release, and refused
		// as a downgrade when the node has moved past it.
		{"replayed old manifest, expired", good, Policy{Keys: pol.Keys, Running: "1.0.0", Now: sampleExpires.AddDate(1, 0, 0)}, ErrExpired},
		{"replayed old manifest, node moved past it", good, Policy{Keys: pol.Keys, Running: "1.2.1", Now: sampleNow}, ErrNotNewer},
		{"tampered expiry", func() ([]byte, []byte) {
			b, s := good()
			return bytes.Replace(b, []byte("2027-02-23"), []byte("2099-02-23"), 1), s
		}, pol, ErrBadSignature},
		{"signed without expiry", resign(func(m *Manifest) { m.Expires = time.Time{} }), pol, ErrMalformed},
		{"signed with expiry before release", resign(func(m *Manifest) { m.Expires = m.Released.Add(-time.Hour) }), pol, ErrMalformed},
		{"signed but unknown schema", resign(func(m *Manifest) { m.Schema = 2 }), pol, ErrMalformed},
		{"signed but escaping payload path", resign(func(m *Manifest) { m.Payloads[0].Path = "../../etc/shadow" }), pol, ErrMalformed},
		{"signed but absolute payload URL", resign(func(m *Manifest) { m.Payloads[0].Path = "http://evil/x" }), pol, ErrMalformed},
		{"signed but bad hash", resign(func(m *Manifest) { m.Payloads[0].SHA256 = "xyz" }), pol, ErrMalformed},
		{"signed but no payloads", resign(func(m *Manifest) { m.Payloads = nil }), pol, ErrMalformed},
		{"signed but unknown field", func() ([]byte, []byte) {
			b, _ := good()
			b = bytes.Replace(b, []byte(`"schema": 1,`), []byte(`"schema": 1, "extra": true,`), 1)
			s, _ := Sign(b, key)
			return b, s
		}, pol, ErrMalformed},
		{"signed but trailing data", func() ([]byte, []byte) {
			b, _ := good()
			b = append(b, []byte(`{"schema":1}`)...)
			s, _ := Sign(b, key)
			return b, s
		}, pol, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, s := tc.input()
			m, err := Verify(b, s, tc.pol)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if m.Version != "1.2.0" {
					t.Fatalf("version %q", m.Version)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error %v, want %v", err, tc.want)
			}
			if m != nil {
				t.Fatal("manifest returned with an error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestKeyIDIsStableAndDistinct(t *testing.T) {
	a, b := testKey(t), testKey(t)
	if KeyID(pubOf(a)) != KeyID(append(ed25519.PublicKey(nil), pubOf(a)...)) {
		t.Fatal("key id not a function of the key")
	}
	if KeyID(pubOf(a)) == KeyID(pubOf(b)) || len(KeyID(pubOf(a))) != 32 {
		t.Fatalf("key ids %s %s", KeyID(pubOf(a)), KeyID(pubOf(b)))
	}
}
