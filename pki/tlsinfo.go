package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSInfo names the files of one side's TLS setup, as etcd's flags do.
type TLSInfo struct {
	CertFile       string
	KeyFile        string
	TrustedCAFile  string
	ClientCertAuth bool
	// Role, when set, is the role the other side's certificate must carry
	// (pki): the peer port and peer dialing take members only.
	Role Role
	// InsecureSkipVerify is for clients only (pithctl --insecure-skip-tls-verify).
	InsecureSkipVerify bool
}

// Empty reports whether no TLS file is set.
func (t TLSInfo) Empty() bool { return t.CertFile == "" && t.KeyFile == "" && t.TrustedCAFile == "" }

func (t TLSInfo) pool() (*x509.CertPool, error) {
	if t.TrustedCAFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(t.TrustedCAFile)
	if err != nil {
		return nil, fmt.Errorf("trusted CA file: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("trusted CA file %s: no PEM certificate in it", t.TrustedCAFile)
	}
	return p, nil
}

// ServerConfig is the listener side: our certificate, and client
// certificates required and checked against the CA when ClientCertAuth.
// The files are reread when they change (Reloader): a renewed
// certificate serves new connections without a restart.
func (t TLSInfo) ServerConfig() (*tls.Config, error) {
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("TLS needs both a certificate and a key file (--cert-file/--key-file or --peer-cert-file/--peer-key-file)")
	}
	ca := ""
	if t.ClientCertAuth {
		if t.TrustedCAFile == "" {
			return nil, errors.New("client certificate auth needs a trusted CA file (--trusted-ca-file or --peer-trusted-ca-file)")
		}
		ca = t.TrustedCAFile
	}
	r, err := NewReloader(t.CertFile, t.KeyFile, ca)
	if err != nil {
		return nil, err
	}
	return r.ServerConfig(t.Role), nil
}

// ClientConfig is the dialing side: the CA to check servers with, and our
// certificate when we have one (mutual TLS, reloaded like ServerConfig's).
func (t TLSInfo) ClientConfig() (*tls.Config, error) {
	if t.CertFile != "" || t.KeyFile != "" {
		r, err := NewReloader(t.CertFile, t.KeyFile, t.TrustedCAFile)
		if err != nil {
			return nil, err
		}
		c := r.ClientConfig(t.Role)
		c.InsecureSkipVerify = t.InsecureSkipVerify
		return c, nil
	}
	c := Base()
	c.InsecureSkipVerify = t.InsecureSkipVerify
	p, err := t.pool()
	if err != nil {
		return nil, err
	}
	c.RootCAs = p
	return c, nil
}
