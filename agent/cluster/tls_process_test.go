package cluster_test

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
	"strings"
	"testing"
	"time"

	etcd "go.etcd.io/etcd/client/v2"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pith test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, dir: dir}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes name.pem and name-key.pem, valid for 127.0.0.1 as both
// server and client.
func (ca *testCA) issue(t *testing.T, name string, serial int64) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	c, k := filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	writePEM(t, c, "CERTIFICATE", der)
	writePEM(t, k, "EC PRIVATE KEY", kb)
	return c, k
}

// TestMutualTLS runs a cluster with mutual TLS on the peer port (raft and
// forwarded writes) and on the client port, drives it with etcd's client,
// and checks that a client without a certificate is refused.
func TestMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	c := newCluster(t, 3)
	var ic []string
	for i, m := range c.members {
		m.peerURL = strings.Replace(m.peerURL, "http:", "https:", 1)
		m.clientURL = strings.Replace(m.clientURL, "http:", "https:", 1)
		ic = append(ic, m.name+"="+m.peerURL)
		cert, key := ca.issue(t, m.name, int64(10+i))
		m.extra = []string{"--cert-file", cert, "--key-file", key, "--trusted-ca-file", filepath.Join(dir, "ca.pem"), "--client-cert-auth",
			"--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", filepath.Join(dir, "ca.pem"), "--peer-client-cert-auth"}
	}
	c.initial = strings.Join(ic, ",")
	c.startAll()
	ccert, ckey := ca.issue(t, "client", 99)
	pair, err := tls.LoadX509KeyPair(ccert, ckey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}
	// The harness's plain client cannot read stats here: wait for a leader
	// with the TLS client instead.
	httpc.Transport = tr
	defer func() { httpc.Transport = nil }()
	leader := c.waitLeader()
	follower := (leader + 1) % 3
	cl, err := etcd.New(etcd.Config{Endpoints: []string{c.members[follower].clientURL}, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	k := etcd.NewKeysAPI(cl)
	if _, err := k.Set(context.Background(), "/secure", "yes", nil); err != nil {
		t.Fatalf("write through a follower over mutual TLS: %v", err)
	}
	r, err := k.Get(context.Background(), "/secure", &etcd.GetOptions{Quorum: true})
	if err != nil || r.Node.Value != "yes" {
		t.Fatalf("quorum read: %+v %v", r, err)
	}
	// No client certificate: the handshake fails.
	bare := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	if resp, err := bare.Get(c.members[follower].clientURL + "/v2/keys/secure"); err == nil {
		resp.Body.Close()
		t.Fatalf("client without a certificate got HTTP %d", resp.StatusCode)
	}
}
