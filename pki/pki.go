// Package pki is a Pith cluster's certificate authority: one ECDSA P-256 CA
// per cluster, and certificates that carry a role (admin, reader, member) in
// their Subject's OrganizationalUnit. The workstation holds the CA key
// (`pith cluster init`/`issue`); nodes and clients hold only their own key
// and the CA certificate. Roles are honoured only on certificates that chain
// to the cluster CA, so the OU of a certificate from elsewhere means nothing.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Role is what a certificate's holder may do (see agent/authz for the table).
type Role string

const (
	// Admin may read and change everything through the client API.
	Admin Role = "admin"
	// Reader may read keys, watch, list units/machines/members, read status.
	Reader Role = "reader"
	// Member is a cluster node: raft, forwarded requests, heartbeats, joining.
	Member Role = "member"
)

// Roles lists the valid roles.
var Roles = []Role{Admin, Reader, Member}

// Organization is the Subject O of every certificate the CA issues.
const Organization = "pith"

// Default lifetimes. The CA outlives its certificates so they can be
// renewed (`pith cluster issue` again; members reload without restart).
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 365 * 24 * time.Hour
)

// RoleOf reads the role of a certificate. The caller must have verified the
// certificate against the cluster CA.
func RoleOf(c *x509.Certificate) (Role, error) {
	var found []Role
	for _, ou := range c.Subject.OrganizationalUnit {
		if slices.Contains(Roles, Role(ou)) {
			found = append(found, Role(ou))
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("certificate %q carries no pith role (Subject OU admin, reader or member): issue it with `pith cluster init` or `pith cluster issue`", c.Subject.CommonName)
	default:
		return "", fmt.Errorf("certificate %q carries several pith roles %v", c.Subject.CommonName, found)
	}
}

// CA is a cluster CA with its key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a self-signed cluster CA named name.
func NewCA(name string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{Organization}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// The CA signs leaves only: no intermediates under it.
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Request describes a certificate to issue.
type Request struct {
	Name     string // Subject CN; also a DNS name for members
	Role     Role
	IPs      []net.IP // members: the addresses peers and clients dial
	DNSNames []string
	// NotBefore/NotAfter default to now-5m and now+CertValidity.
	NotBefore, NotAfter time.Time
}

// Issue signs a new key pair for req and returns them as PEM.
func (ca *CA) Issue(req Request) (certPEM, keyPEM []byte, err error) {
	if req.Name == "" {
		return nil, nil, errors.New("certificate needs a name")
	}
	if !slices.Contains(Roles, req.Role) {
		return nil, nil, fmt.Errorf("role %q: use admin, reader or member", req.Role)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	nb, na := req.NotBefore, req.NotAfter
	if nb.IsZero() {
		nb = now.Add(-5 * time.Minute)
	}
	if na.IsZero() {
		na = now.Add(CertValidity)
	}
	if na.After(ca.Cert.NotAfter) {
		na = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.Name, Organization: []string{Organization}, OrganizationalUnit: []string{string(req.Role)}},
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if req.Role == Member {
		// A member serves (client and peer ports) and dials peers.
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = req.IPs
		tmpl.DNSNames = append([]string{req.Name}, req.DNSNames...)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", kb), nil
}

// CertPEM is the CA certificate as PEM.
func (ca *CA) CertPEM() []byte { return pemBlock("CERTIFICATE", ca.Cert.Raw) }

// KeyPEM is the CA key as PEM (PKCS #8).
func (ca *CA) KeyPEM() ([]byte, error) {
	b, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", b), nil
}

// LoadCA reads DIR/ca.crt and DIR/ca.key.
func LoadCA(dir string) (*CA, error) {
	cb, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w (run `pith cluster init --dir %s` first)", err, dir)
	}
	kb, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("cluster CA key: %w", err)
	}
	certs, err := ParseCerts(cb)
	if err != nil || len(certs) != 1 {
		return nil, fmt.Errorf("%s: want one PEM certificate (%v)", filepath.Join(dir, CACertFile), err)
	}
	key, err := ParseKey(kb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CAKeyFile), err)
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || !pub.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("%s does not belong to %s", CAKeyFile, CACertFile)
	}
	if !certs[0].IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", CACertFile)
	}
	return &CA{Cert: certs[0], Key: key}, nil
}

// ParseCerts reads every CERTIFICATE block of a PEM file.
func ParseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// ParseKey reads a PEM private key (PKCS #8 or SEC 1 EC).
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM private key")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}
