package vm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pith-os/pith/atomicfile"
)

// Secure Boot firmware: OVMF built with SMM-protected variables, which
// enforces image signatures once a PK is enrolled (Debian's ovmf package).
var (
	OVMFCodeSecure = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	OVMFVarsSecure = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// SecureBootCertPrefix names the certificates pith build --secure-boot-keys
// writes beside the image (pith-sb-PK.crt...).
const SecureBootCertPrefix = "pith-sb-"

// firmwareVars writes the node's OVMF variable store: Debian's empty one,
// or with SecureBoot the 4 MiB one with the certificates enrolled.
func (m *Machine) firmwareVars(vars string) error {
	c := m.Config
	if c.SecureBoot == nil {
		_, empty := c.uefiFiles()
		return atomicfile.CopyFile(empty, vars, 0o644)
	}
	if _, err := os.Stat(OVMFCodeSecure); err != nil {
		return fmt.Errorf("secure boot firmware missing: %v (install Debian's ovmf package)", err)
	}
	return WriteEnrolledVars(vars, *c.SecureBoot)
}

// LoadSecureBootCerts reads <prefix>PK.crt, <prefix>KEK.crt and
// <prefix>db.crt (PEM or DER) from dir: a pith keygen --secure-boot
// directory (no prefix) or pith build's output (SecureBootCertPrefix).
func LoadSecureBootCerts(dir, prefix string) (*SecureBootCerts, error) {
	var c SecureBootCerts
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{"PK", &c.PK}, {"KEK", &c.KEK}, {"db", &c.DB}} {
		b, err := os.ReadFile(filepath.Join(dir, prefix+f.name+".crt"))
		if err != nil {
			return nil, fmt.Errorf("secure boot certificates: %v (an image built with pith build --secure-boot-keys has them beside it)", err)
		}
		if p, _ := pem.Decode(b); p != nil {
			b = p.Bytes
		}
		*f.dst = b
	}
	return &c, nil
}

// CheckAgainst compares the certificates with the SHA-256s (hex, of the
// DER) an image's manifest records for them (manifest.SecureBoot.Certs,
// by role). Certificates of another build, a stale pith-sb-*.crt or
// another key directory, would have the firmware refuse to start GRUB.
func (c *SecureBootCerts) CheckAgainst(want map[string]string) error {
	for _, k := range []struct {
		role string
		der  []byte
	}{{"PK", c.PK}, {"KEK", c.KEK}, {"db", c.DB}} {
		sum := sha256.Sum256(k.der)
		if w := want[k.role]; w != "" && w != hex.EncodeToString(sum[:]) {
			return fmt.Errorf("the %s certificate to enroll (SHA-256 %x) is not the one the image's boot chain is signed for (%s, its manifest says)", k.role, sum, w)
		}
	}
	return nil
}
