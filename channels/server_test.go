package channels

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestServeTLS runs the server as `pith channel serve --tls-cert --tls-key`
// does and fetches a channel through it with a client that trusts the cert.
func TestServeTLS(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 64<<10)
	dir := t.TempDir()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pith-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)

	s, err := NewServer(tr.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer(ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- Serve(srv, ln, certFile, keyFile) }()

	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	pool.AddCert(cert)
	c := tr.client(t, "https://"+ln.Addr().String()+"/")
	c.HTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	m, err := c.Manifest(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	usr, _ := m.Payload(PayloadUSR)
	if _, err := c.Download(context.Background(), usr, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	// A client without the cert refuses the server.
	c.HTTP = &http.Client{}
	if _, err := c.Manifest(context.Background(), ""); err == nil {
		t.Fatal("untrusted TLS certificate accepted")
	}
	srv.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
	if err := Serve(s.HTTPServer(""), ln, certFile, ""); err == nil {
		t.Fatal("TLS with a cert and no key accepted")
	}
}
