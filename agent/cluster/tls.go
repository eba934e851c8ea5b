package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/pith-os/pith/pki"
)

// TLSInfo names the files of one side's TLS setup, as etcd's flags do.
type TLSInfo struct {
	CertFile       string
	KeyFile        string
	TrustedCAFile  string
	ClientCertAuth bool
	// Role, when set, is the role the other side's certificate must carry
	// (pki): the peer port and peer dialing take members only.
	Role pki.Role
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
// The files are reread when they change (pki.Reloader): a renewed
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
	r, err := pki.NewReloader(t.CertFile, t.KeyFile, ca)
	if err != nil {
		return nil, err
	}
	return r.ServerConfig(t.Role), nil
}

// ClientConfig is the dialing side: the CA to check servers with, and our
// certificate when we have one (mutual TLS, reloaded like ServerConfig's).
func (t TLSInfo) ClientConfig() (*tls.Config, error) {
	if t.CertFile != "" || t.KeyFile != "" {
		r, err := pki.NewReloader(t.CertFile, t.KeyFile, t.TrustedCAFile)
		if err != nil {
			return nil, err
		}
		c := r.ClientConfig(t.Role)
		c.InsecureSkipVerify = t.InsecureSkipVerify
		return c, nil
	}
	c := pki.Base()
	c.InsecureSkipVerify = t.InsecureSkipVerify
	p, err := t.pool()
	if err != nil {
		return nil, err
	}
	c.RootCAs = p
	return c, nil
}

// DiscoveryClient is the HTTP client for a discovery URL: it trusts the
// system's roots and the cluster CA in caFile (if set), so a discovery
// service with a public certificate or one from the cluster CA is
// verified. It presents no certificate: the discovery service is not a
// member, and a node's member key proves nothing to it.
func DiscoveryClient(caFile string) (*http.Client, error) {
	c := pki.Base()
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("trusted CA file: %w", err)
		}
		if !roots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("trusted CA file %s: no PEM certificate in it", caFile)
		}
	}
	c.RootCAs = roots
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: c, Proxy: http.ProxyFromEnvironment}}, nil
}
