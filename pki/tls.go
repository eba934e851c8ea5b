package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// modernSuites are the TLS 1.2 suites allowed next to TLS 1.3: forward
// secret key exchange and AEAD ciphers only (TLS 1.3's are fixed by Go).
var modernSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Base is the TLS floor for every Pith listener and dialer: TLS 1.3, or
// TLS 1.2 with modern suites (etcd and fleetctl builds of old Go still
// connect).
func Base() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: modernSuites}
}

// reloadEvery bounds how often handshakes look at the files (a stat each).
const reloadEvery = time.Second

// Reloader serves a key pair and CA that it rereads when their files change
// (checked at most once a second, on handshakes) or on Reload (SIGHUP):
// renewed certificates take effect on new connections without a restart,
// and established connections keep theirs.
type Reloader struct {
	certFile, keyFile, caFile string

	mu      sync.Mutex
	checked time.Time
	stamp   string // mtimes and sizes of the files last loaded
	cert    *tls.Certificate
	pool    *x509.CertPool
	err     error // last reload error, kept while the old pair serves
}

// NewReloader loads the files once; caFile may be empty.
func NewReloader(certFile, keyFile, caFile string) (*Reloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate and a key file")
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reloader) fileStamp() string {
	s := ""
	for _, f := range []string{r.certFile, r.keyFile, r.caFile} {
		if f == "" {
			continue
		}
		if fi, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
		} else {
			s += "missing;"
		}
	}
	return s
}

// Reload rereads the files. On error the previous pair stays in use.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked()
}

func (r *Reloader) reloadLocked() error {
	stamp := r.fileStamp()
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.err = fmt.Errorf("load TLS key pair %s: %w", r.certFile, err)
		return r.err
	}
	var pool *x509.CertPool
	if r.caFile != "" {
		b, err := os.ReadFile(r.caFile)
		if err != nil {
			r.err = fmt.Errorf("trusted CA file: %w", err)
			return r.err
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			r.err = fmt.Errorf("trusted CA file %s: no PEM certificate in it", r.caFile)
			return r.err
		}
	}
	r.cert, r.pool, r.stamp, r.err = &cert, pool, stamp, nil
	r.checked = time.Now()
	return nil
}

// current returns the pair and pool, reloading first when the files
// changed since the last look (a failed reload keeps the old ones).
func (r *Reloader) current() (*tls.Certificate, *x509.CertPool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= reloadEvery {
		r.checked = time.Now()
		if r.fileStamp() != r.stamp {
			_ = r.reloadLocked()
		}
	}
	return r.cert, r.pool
}

// Leaf is the certificate being served now.
func (r *Reloader) Leaf() *x509.Certificate {
	c, _ := r.current()
	return c.Leaf
}

// Err is the last reload's error, nil once a reload succeeded.
func (r *Reloader) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// ServerConfig serves the current pair. With a CA file, it requires client
// certificates from that CA and, when role is set, with that role (the peer
// port takes members only, refused in the handshake).
func (r *Reloader) ServerConfig(role Role) *tls.Config {
	c := Base()
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool := r.current()
		cc := Base()
		cc.Certificates = []tls.Certificate{*cert}
		if pool != nil {
			cc.ClientCAs = pool
			cc.ClientAuth = tls.RequireAndVerifyClientCert
			cc.VerifyConnection = requireRole(role, "client")
		}
		return cc, nil
	}
	return c
}

// ClientConfig dials with the current pair, checks servers against the CA
// and, when role is set, that they hold it (a peer must be a member).
func (r *Reloader) ClientConfig(role Role) *tls.Config {
	c := Base()
	_, pool := r.current()
	c.RootCAs = pool
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		cert, _ := r.current()
		return cert, nil
	}
	c.VerifyConnection = requireRole(role, "server")
	return c
}

// requireRole refuses a verified peer certificate without role (nil check
// when role is empty).
func requireRole(role Role, side string) func(tls.ConnectionState) error {
	if role == "" {
		return nil
	}
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%s sent no certificate", side)
		}
		got, err := RoleOf(cs.PeerCertificates[0])
		if err != nil {
			return err
		}
		if got != role {
			return fmt.Errorf("%s certificate %q has role %s; this port takes %s certificates only", side, cs.PeerCertificates[0].Subject.CommonName, got, role)
		}
		return nil
	}
}
