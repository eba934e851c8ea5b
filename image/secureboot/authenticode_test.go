package secureboot

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/pe"
	"encoding/binary"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// issuedBy writes into a new directory a db key and certificate issued by
// the CA made here (not self-signed, as Generate's are), for SignEFI, and
// returns it with the CA's certificate (PEM).
func issuedBy(t *testing.T) (*Keys, []byte) {
	t.Helper()
	caKey, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test db CA"}, NotBefore: epoch.Add(-time.Hour), NotAfter: epoch.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test db signer"}, NotBefore: epoch.Add(-time.Hour), NotAfter: epoch.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writePEM(filepath.Join(dir, KeyFile("db")), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writePEM(filepath.Join(dir, CertFile("db")), "CERTIFICATE", der, 0o644); err != nil {
		t.Fatal(err)
	}
	caPEM := filepath.Join(dir, "ca.crt")
	if err := writePEM(caPEM, "CERTIFICATE", caDER, 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(caPEM)
	return &Keys{Dir: dir}, b
}

// VerifyEFI takes what the firmware with db enrolled runs (sbsign by db or
// by a certificate db issued, whatever the checksum field says) and
// refuses the rest: another db, no signature, a changed image.
func TestVerifyEFI(t *testing.T) {
	for _, tool := range []string{"sbsign", "sbverify", "faketime", "grub-mkimage"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps installs it): %v", tool, err)
		}
	}
	k, other := newKeys(t), newKeys(t)
	chained, caPEM := issuedBy(t)
	dir := t.TempDir()
	efi := unsignedEFI(t, dir)
	signAt := func(by *Keys, name string, at time.Time) []byte {
		out := filepath.Join(dir, name)
		if err := by.SignEFI(context.Background(), efi, out, at); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(out)
		return b
	}
	sign := func(by *Keys, name string) []byte { return signAt(by, name, epoch) }
	signed, byChained := sign(k, "k.efi"), sign(chained, "chained.efi")
	// A build's SOURCE_DATE_EPOCH is the signing time, often before the db
	// certificate was made (pith keygen runs later): the firmware runs it.
	early := signAt(k, "early.efi", epoch.AddDate(-1, 0, 0))
	unsigned, _ := os.ReadFile(efi)
	db, _ := os.ReadFile(filepath.Join(k.Dir, CertFile("db")))
	otherDB, _ := os.ReadFile(filepath.Join(other.Dir, CertFile("db")))

	// A byte in the middle of the largest section, and the checksum field
	// (which Authenticode leaves out of the digest).
	f, err := pe.NewFile(bytes.NewReader(signed))
	if err != nil {
		t.Fatal(err)
	}
	var sec *pe.Section
	for _, s := range f.Sections {
		if sec == nil || s.Size > sec.Size {
			sec = s
		}
	}
	changed := bytes.Clone(signed)
	changed[sec.Offset+sec.Size/2] ^= 0x01
	checksum := bytes.Clone(signed)
	at := binary.LittleEndian.Uint32(signed[0x3c:]) + 4 + 20 + 64
	binary.LittleEndian.PutUint32(checksum[at:], binary.LittleEndian.Uint32(signed[at:])+12345)
	// The last byte of the RSA signature, the end of the certificate
	// table's first entry: outside the image's digest.
	forged := bytes.Clone(signed)
	certs := f.OptionalHeader.(*pe.OptionalHeader64).DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY].VirtualAddress
	forged[certs+binary.LittleEndian.Uint32(signed[certs:])-1] ^= 0x01

	for _, tc := range []struct {
		name      string
		db, image []byte
		want      string // in the error; "" = accepted
	}{
		{"signed by db", db, signed, ""},
		{"db certificate in DER", k.Certs["db"].Raw, signed, ""},
		{"checksum field changed", db, checksum, ""},
		{"signing time before db's validity", db, early, ""},
		{"signed by a certificate db issued", caPEM, byChained, ""},
		{"signed by another db key", otherDB, signed, "which is not the db certificate"},
		{"signed by a certificate another CA issued", db, byChained, "which is not the db certificate"},
		{"not signed", db, unsigned, "no Authenticode signature"},
		{"one byte of a section changed", db, changed, "the image changed after signing"},
		{"signature changed", db, forged, "verification error"},
		{"not a PE image", db, []byte("MZ" + strings.Repeat("x", 200)), "not a PE/COFF image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyEFI(tc.db, tc.image)
			if tc.want == "" && err != nil {
				t.Fatalf("VerifyEFI: %v, want accepted", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("VerifyEFI: %v, want %q", err, tc.want)
			}
		})
	}
	// sbverify agrees on the chained signature (its --cert takes the CA).
	os.WriteFile(filepath.Join(dir, "ca.crt"), caPEM, 0o644)
	if b, err := exec.Command("sbverify", "--cert", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "chained.efi")).CombinedOutput(); err != nil {
		t.Errorf("sbverify with the CA: %v: %s", err, b)
	}
}
