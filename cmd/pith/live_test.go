package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/secureboot"
)

// The live media are signed with the image's keys or not at all, and pith
// live sign writes the signature GRUB checks.
func TestLiveSecureBoot(t *testing.T) {
	var keys [2]*secureboot.Keys
	for i := range keys {
		dir := t.TempDir()
		if err := secureboot.Generate(dir, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
		var err error
		if keys[i], err = secureboot.Load(dir); err != nil {
			t.Fatal(err)
		}
	}
	signed := &manifest.Manifest{SecureBoot: &manifest.SecureBoot{Certs: map[string]string{}}}
	for r, c := range keys[0].Certs {
		signed.SecureBoot.Certs[r] = secureboot.Fingerprint(c)
	}
	for _, tc := range []struct {
		name       string
		m          *manifest.Manifest
		keys       *secureboot.Keys
		err, warns string
	}{
		{"unsigned image, no keys", &manifest.Manifest{}, nil, "", ""},
		{"signed image, its keys", signed, keys[0], "", ""},
		{"signed image, no keys: unsigned media, said", signed, nil, "", "unsigned"},
		{"signed image, other keys", signed, keys[1], "is not the one the image is signed for", ""},
		{"unsigned image, keys", &manifest.Manifest{}, keys[0], "not signed", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warn bytes.Buffer
			err := liveSecureBoot(tc.m, tc.keys, &warn)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("liveSecureBoot: %v, want error %q", err, tc.err)
			}
			if tc.warns == "" && warn.Len() > 0 || !strings.Contains(warn.String(), tc.warns) {
				t.Errorf("warned %q, want %q", warn.String(), tc.warns)
			}
		})
	}

	cfg := filepath.Join(t.TempDir(), "pith-pxe.cfg")
	os.WriteFile(cfg, []byte("set pith_pxe_base=(http,192.0.2.10)/pith\n"), 0o644)
	if _, err := runPith(t, "live", "sign", "--secure-boot-keys", keys[0].Dir, cfg); err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(keys[0].GrubPub())
	data, _ := os.ReadFile(cfg)
	sig, _ := os.ReadFile(cfg + secureboot.SigSuffix)
	if err := secureboot.VerifyDetached(pub, data, sig); err != nil {
		t.Errorf("pith live sign's signature: %v", err)
	}
}
