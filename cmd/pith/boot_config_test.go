package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/secureboot"
	"github.com/pith-os/pith/vm"
)

func TestKeygenSecureBoot(t *testing.T) {
	keygen, _, _ := rootCmd.Find([]string{"keygen"})
	t.Cleanup(func() {
		keygen.Flags().Set("secure-boot", "false")
		keygen.Flags().Set("name", "Pith")
		keygen.Flags().Lookup("name").Changed = false
	})
	dir := filepath.Join(t.TempDir(), "sb")
	if _, err := runPith(t, "keygen", "--secure-boot", "--name", "Pith development", "--out", dir); err != nil {
		t.Fatal(err)
	}
	if k, err := secureboot.Load(dir); err != nil {
		t.Fatalf("keys made by pith keygen --secure-boot do not load: %v", err)
	} else if cn := k.Certs["db"].Subject.CommonName; cn != "Pith development db" {
		t.Errorf("db certificate's common name %q, want --name's", cn)
	}
	keygen.Flags().Set("secure-boot", "false")
	if _, err := runPith(t, "keygen", "--name", "x", "--out", t.TempDir()); err == nil || !strings.Contains(err.Error(), "needs --secure-boot") {
		t.Errorf("keygen --name without --secure-boot: %v, want refused", err)
	}
	if _, err := runPith(t, "keygen", "--secure-boot", "--out", dir); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second keygen --secure-boot: %v", err)
	}
	// A signed image as pith build leaves it: the certificates beside it,
	// the manifest naming them; and one whose manifest names other keys.
	signed := signedImageDir(t, dir, nil)
	other := signedImageDir(t, dir, map[string]string{"db": strings.Repeat("ab", 32)})
	// pith boot --secure-boot enrolls those certificates.
	for _, tc := range []struct {
		name string
		o    bootOpts
		want string // error text; "" = loads; "-" = no Secure Boot
	}{
		{"from the key dir", bootOpts{firmware: vm.UEFI, secureBoot: true, secureBootKeys: dir}, ""},
		{"BIOS", bootOpts{firmware: vm.BIOS, secureBoot: true, secureBootKeys: dir}, "needs --firmware uefi"},
		{"keys without --secure-boot", bootOpts{firmware: vm.UEFI, secureBootKeys: dir}, "needs --secure-boot"},
		{"image without certificates beside it", bootOpts{firmware: vm.UEFI, secureBoot: true, image: filepath.Join(t.TempDir(), "pith.qcow2")}, "pith-sb-PK.crt"},
		{"signed image: on by default", bootOpts{image: signed}, ""},
		{"signed image, uefi: on by default", bootOpts{image: signed, firmware: vm.UEFI}, ""},
		{"signed image, its keys given", bootOpts{image: signed, secureBootKeys: dir}, ""},
		{"signed image, --firmware bios", bootOpts{image: signed, firmware: vm.BIOS}, "-"},
		{"signed image, --secure-boot=false", bootOpts{image: signed, secureBootSet: true}, "-"},
		{"unsigned image: off by default", bootOpts{image: filepath.Join(t.TempDir(), "pith.qcow2")}, "-"},
		{"certificates not the image's", bootOpts{image: other}, "the db certificate to enroll"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.o.secureBootCerts(tc.o.imageManifest(), t.Logf)
			if tc.want == "-" {
				if err != nil || c != nil || tc.o.secureBoot {
					t.Fatalf("certs %v, %v, Secure Boot %v: want none", c, err, tc.o.secureBoot)
				}
				return
			}
			if tc.want == "" {
				if !tc.o.secureBoot || tc.o.firmware != vm.UEFI {
					t.Errorf("Secure Boot %v, firmware %q: want on, uefi", tc.o.secureBoot, tc.o.firmware)
				}
				db, _ := os.ReadFile(filepath.Join(dir, "db.crt"))
				if err != nil || c == nil || len(c.DB) == 0 || len(c.DB) >= len(db) {
					t.Fatalf("certs %v, %v (want DER, shorter than the PEM file)", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

// signedImageDir writes, in a new directory, what pith build leaves
// beside a signed image: the certificates of the key directory dir as
// pith-sb-*.crt and a manifest naming their SHA-256, or the ones in
// override. It returns the image's path (the image itself is not needed).
func signedImageDir(t *testing.T, dir string, override map[string]string) string {
	t.Helper()
	out := t.TempDir()
	m := manifest.Manifest{Schema: manifest.SchemaVersion, SecureBoot: &manifest.SecureBoot{Certs: map[string]string{}}}
	for _, role := range []string{"PK", "KEK", "db"} {
		b, err := os.ReadFile(filepath.Join(dir, role+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, vm.SecureBootCertPrefix+role+".crt"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		p, _ := pem.Decode(b)
		sum := sha256.Sum256(p.Bytes)
		m.SecureBoot.Certs[role] = hex.EncodeToString(sum[:])
		if o := override[role]; o != "" {
			m.SecureBoot.Certs[role] = o
		}
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, manifest.FileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(out, "pith.qcow2")
}
