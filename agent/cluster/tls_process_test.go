package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	etcd "go.etcd.io/etcd/client/v2"

	"github.com/pith-os/pith/pki"
)

// TestMutualTLS runs a cluster with mutual TLS on the peer port (raft and
// forwarded writes) and on the client port, drives it with etcd's client,
// and checks that a client without a certificate is refused.
func TestMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	dir := t.TempDir()
	ca, err := pki.Init(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 3)
	var ic []string
	for _, m := range c.members {
		m.peerURL = strings.Replace(m.peerURL, "http:", "https:", 1)
		m.clientURL = strings.Replace(m.clientURL, "http:", "https:", 1)
		ic = append(ic, m.name+"="+m.peerURL)
		if err := ca.IssueMember(dir, m.name, nil); err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(dir, m.name+".crt"), filepath.Join(dir, m.name+".key")
		m.extra = []string{"--cert-file", cert, "--key-file", key, "--trusted-ca-file", filepath.Join(dir, "ca.crt"), "--client-cert-auth",
			"--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", filepath.Join(dir, "ca.crt"), "--peer-client-cert-auth"}
	}
	c.initial = strings.Join(ic, ",")
	c.startAll()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
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
	// It went on the follower's proposal stream, not the HTTP fallback
	// (which also works, and would hide a stream that fails under TLS).
	if b, _ := os.ReadFile(c.members[follower].logPath); strings.Contains(string(b), "took no proposal stream") {
		t.Fatalf("the follower fell back to HTTP for its proposals over TLS:\n%s", b)
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
