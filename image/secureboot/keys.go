// Package secureboot holds the operator's UEFI Secure Boot keys and signs
// Pith's boot chain with them.
//
// The chain (README "Secure Boot"): the firmware trusts db; db signs GRUB's
// standalone BOOTX64.EFI (sbsign), which embeds an OpenPGP public key and
// runs with check_signatures=enforce, so every file GRUB then reads as
// code or configuration (grub.cfg, pith/verity-<slot>.cfg with the slot's
// dm-verity root hash, the kernel and the initrd) must carry a detached
// signature by that key. The kernel is also sbsigned with db. grubenv is
// read with --skip-sig and only for the A/B variables, which name a slot
// and cannot change what a slot boots.
package secureboot

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Names of the key files in a key directory (pith keygen --secure-boot).
const (
	// GrubKeyFile is the RSA key (PEM) that signs what GRUB loads;
	// GrubPubFile is its OpenPGP public key packet, embedded in GRUB.
	GrubKeyFile = "grub.key"
	GrubPubFile = "grub.pub"
)

// Roles are the firmware's key databases, in the order they are made.
var Roles = []string{"PK", "KEK", "db"}

// KeyFile and CertFile name a role's private key (PEM, PKCS#1 RSA) and
// certificate (PEM).
func KeyFile(role string) string  { return role + ".key" }
func CertFile(role string) string { return role + ".crt" }

// rsaBits: 2048 is what firmware implementations are required to support
// for PK, KEK and db (UEFI spec 32.3 lists RSA-2048 with SHA-256).
const rsaBits = 2048

// Generate writes a new PK, KEK and db (RSA keys and self-signed
// certificates, valid 20 years) and GRUB's OpenPGP key into dir. It refuses
// to overwrite any existing key file. name goes into the certificates'
// common names ("<name> PK").
func Generate(dir, name string, now time.Time) error {
	files := []string{GrubKeyFile, GrubPubFile}
	for _, r := range Roles {
		files = append(files, KeyFile(r), CertFile(r))
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s exists: refusing to overwrite a Secure Boot key", filepath.Join(dir, f))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, r := range Roles {
		key, err := rsa.GenerateKey(rand.Reader, rsaBits)
		if err != nil {
			return err
		}
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: name + " " + r},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.AddDate(20, 0, 0),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			// db signs EFI binaries: sbverify and some firmware want code signing.
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
			BasicConstraintsValid: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, KeyFile(r)), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), 0o600); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, CertFile(r)), "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
	}
	return generateGrubKey(dir, now)
}

// generateGrubKey makes GRUB's RSA key (GRUB 2.06 verifies RSA and DSA
// only): the private half as PEM, the public half as an OpenPGP packet.
func generateGrubKey(dir string, now time.Time) error {
	key, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, GrubKeyFile), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), 0o600); err != nil {
		return err
	}
	pub := pgpKey{pub: &key.PublicKey, created: now.Truncate(time.Second)}
	f, err := os.OpenFile(filepath.Join(dir, GrubPubFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(pub.packet()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Keys is a loaded key directory: what pith build needs to sign.
type Keys struct {
	Dir   string
	Certs map[string]*x509.Certificate // PK, KEK, db
	grub  *rsa.PrivateKey
	pub   pgpKey
}

// Load reads a key directory made by Generate. Only db's private key and
// GRUB's are needed to sign; PK's and KEK's may be kept offline.
func Load(dir string) (*Keys, error) {
	k := &Keys{Dir: dir, Certs: map[string]*x509.Certificate{}}
	for _, r := range Roles {
		c, err := ReadCert(filepath.Join(dir, CertFile(r)))
		if err != nil {
			return nil, fmt.Errorf("secure boot keys %s: %v (make them with pith keygen --secure-boot --out DIR)", dir, err)
		}
		k.Certs[r] = c
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile("db"))); err != nil {
		return nil, fmt.Errorf("secure boot keys %s: db's private key: %v", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, GrubKeyFile))
	if err != nil {
		return nil, fmt.Errorf("secure boot keys %s: %v", dir, err)
	}
	p, _ := pem.Decode(b)
	if p == nil {
		return nil, fmt.Errorf("secure boot keys %s: %s is not PEM", dir, GrubKeyFile)
	}
	if k.grub, err = x509.ParsePKCS1PrivateKey(p.Bytes); err != nil {
		return nil, fmt.Errorf("secure boot keys %s: %s: %v", dir, GrubKeyFile, err)
	}
	if b, err = os.ReadFile(filepath.Join(dir, GrubPubFile)); err != nil {
		return nil, fmt.Errorf("secure boot keys %s: %v", dir, err)
	}
	if k.pub, err = parsePublicKey(b); err != nil {
		return nil, fmt.Errorf("secure boot keys %s: %s: %v", dir, GrubPubFile, err)
	}
	if !k.pub.pub.Equal(&k.grub.PublicKey) {
		return nil, fmt.Errorf("secure boot keys %s: %s is not the public half of %s", dir, GrubPubFile, GrubKeyFile)
	}
	return k, nil
}

// ReadCert reads a PEM (or DER) X.509 certificate.
func ReadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if p, _ := pem.Decode(b); p != nil {
		b = p.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return c, nil
}

// Fingerprint is a certificate's SHA-256, hex: the manifest names db by it.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}
