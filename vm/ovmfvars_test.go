package vm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"
)

func testCert(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// EnrollVars on Debian's empty store: the store reads back with PK, KEK,
// db (one X.509 signature list each, time-authenticated) and
// SecureBootEnable, as the firmware will read it; nothing else changes.
func TestEnrollVars(t *testing.T) {
	tmpl, err := os.ReadFile(OVMFVarsSecure)
	if err != nil {
		t.Fatalf("%v (install Debian's ovmf: make deps)", err)
	}
	certs := SecureBootCerts{PK: testCert(t, "PK"), KEK: testCert(t, "KEK"), DB: testCert(t, "db")}
	img, err := EnrollVars(tmpl, certs)
	if err != nil {
		t.Fatal(err)
	}
	if len(img) != len(tmpl) {
		t.Fatalf("store size %d, want %d", len(img), len(tmpl))
	}
	before, free0, _ := ParseVars(tmpl)
	vars, free, err := ParseVars(img)
	if err != nil {
		t.Fatal(err)
	}
	// Bytes after the new variables are still erased flash.
	if !bytes.Equal(img[free:free+64], tmpl[free:free+64]) || !bytes.Equal(img[:free0], tmpl[:free0]) {
		t.Fatal("EnrollVars changed bytes outside the appended variables")
	}
	want := map[string]struct {
		guid  [16]byte
		attrs uint32
		cert  []byte
	}{
		"PK": {guidGlobalVariable, attrSecureVar, certs.PK}, "KEK": {guidGlobalVariable, attrSecureVar, certs.KEK},
		"db": {guidImageSecurity, attrSecureVar, certs.DB}, "SecureBootEnable": {guidSecureBootEn, attrNV | attrBS, nil},
	}
	added := vars[len(before):]
	if len(added) != len(want) {
		t.Fatalf("%d variables added, want %d", len(added), len(want))
	}
	for _, v := range added {
		w, ok := want[v.Name]
		if !ok || !v.Active || v.GUID != w.guid || v.Attrs != w.attrs {
			t.Errorf("variable %s: guid %x attrs %#x active %v", v.Name, v.GUID, v.Attrs, v.Active)
			continue
		}
		if w.cert == nil {
			if !bytes.Equal(v.Data, []byte{1}) {
				t.Errorf("SecureBootEnable = %x, want 01", v.Data)
			}
			continue
		}
		if !bytes.Equal(v.Data[:16], guidCertX509[:]) || !bytes.Equal(v.Data[44:], w.cert) || int(v.Data[16])|int(v.Data[17])<<8 != len(v.Data) {
			t.Errorf("%s is not one X.509 signature list of its certificate", v.Name)
		}
	}
	if added[len(added)-1].Name != "PK" {
		t.Error("PK is not the last variable written")
	}
}

func TestEnrollVarsRefuses(t *testing.T) {
	tmpl, err := os.ReadFile(OVMFVarsSecure)
	if err != nil {
		t.Fatal(err)
	}
	good := SecureBootCerts{PK: testCert(t, "PK"), KEK: testCert(t, "KEK"), DB: testCert(t, "db")}
	ms, msErr := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
	for _, tc := range []struct {
		name  string
		tmpl  []byte
		certs SecureBootCerts
		want  string
	}{
		{"not a certificate", tmpl, SecureBootCerts{PK: good.PK, KEK: []byte("nope"), DB: good.DB}, "KEK certificate"},
		{"not a variable store", make([]byte, 4096), good, "not an OVMF variable store"},
		{"keys already enrolled", ms, good, "already holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tmpl == nil {
				t.Fatalf("Debian's OVMF_VARS_4M.ms.fd: %v", msErr)
			}
			if _, err := EnrollVars(tc.tmpl, tc.certs); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("EnrollVars: %v, want %q", err, tc.want)
			}
		})
	}
}
