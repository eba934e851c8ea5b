package walkthrough

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/secureboot"
	"github.com/pith-os/pith/vm"
)

// TestSecureBootCerts: a signed image's nodes enroll the certificates
// beside it, and its next release needs the keys it was signed with.
func TestSecureBootCerts(t *testing.T) {
	keys, other := t.TempDir(), t.TempDir()
	for _, d := range []string{keys, other} {
		if err := secureboot.Generate(d, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// imageDir is a build's output: the certificates beside the image
	// (pith-sb-*.crt) and the manifest's SHA-256s of keys' certificates.
	certs := map[string]string{}
	imageDir := func(t *testing.T, from string) string {
		dir := t.TempDir()
		for _, r := range secureboot.Roles {
			b, err := os.ReadFile(filepath.Join(from, secureboot.CertFile(r)))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, vm.SecureBootCertPrefix+r+".crt"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if from == keys {
				p, _ := pem.Decode(b)
				sum := sha256.Sum256(p.Bytes)
				certs[r] = hex.EncodeToString(sum[:])
			}
		}
		return dir
	}
	good := imageDir(t, keys)
	stale := imageDir(t, other)
	signed := &manifest.Manifest{SecureBoot: &manifest.SecureBoot{Certs: certs}}
	for _, tc := range []struct {
		name    string
		cfg     Config
		m       *manifest.Manifest
		enrolls bool
		err     string
	}{
		{"unsigned image", Config{ImageDir: t.TempDir()}, &manifest.Manifest{}, false, ""},
		{"signed, its keys", Config{ImageDir: good, SecureBootKeys: keys}, signed, true, ""},
		{"signed, no keys for the next release", Config{ImageDir: good}, signed, false, "--secure-boot-keys"},
		{"signed, other keys for the next release", Config{ImageDir: good, SecureBootKeys: other}, signed, false, "is not the one"},
		{"signed, stale certificates beside it", Config{ImageDir: stale, SecureBootKeys: keys}, signed, false, "is not the one"},
		{"signed, no certificates beside it", Config{ImageDir: t.TempDir(), SecureBootKeys: keys}, signed, false, "secure boot certificates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := secureBootCerts(tc.cfg, tc.m)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("secureBootCerts: %v, want error %q", err, tc.err)
			}
			if (c != nil) != tc.enrolls {
				t.Errorf("certificates to enroll: %v, want %v", c != nil, tc.enrolls)
			}
		})
	}
}
