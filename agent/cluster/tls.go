package cluster

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
func (t TLSInfo) ServerConfig() (*tls.Config, error) {
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("TLS needs both a certificate and a key file (--cert-file/--key-file or --peer-cert-file/--peer-key-file)")
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCertAuth {
		p, err := t.pool()
		if err != nil {
			return nil, err
		}
		if p == nil {
			return nil, errors.New("client certificate auth needs a trusted CA file (--trusted-ca-file or --peer-trusted-ca-file)")
		}
		c.ClientCAs = p
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// ClientConfig is the dialing side: the CA to check servers with, and our
// certificate when we have one (mutual TLS).
func (t TLSInfo) ClientConfig() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify}
	p, err := t.pool()
	if err != nil {
		return nil, err
	}
	c.RootCAs = p
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load TLS key pair: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
