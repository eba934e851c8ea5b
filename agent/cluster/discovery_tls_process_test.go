package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/pki"
)

// TestDiscoveryTLS: with a cluster CA, members found by discovery speak
// mutual TLS, and a late member joins the full cluster with its member
// certificate (POST /v2/members on a founder's peer port, forwarded to the
// leader with the member role): what authz lets members do is enough.
func TestDiscoveryTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	token := discoveryToken(t, 3)
	dir := t.TempDir()
	ca, err := pki.Init(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 4)
	c.initial = ""
	for _, m := range c.members {
		m.peerURL = strings.Replace(m.peerURL, "http:", "https:", 1)
		m.clientURL = strings.Replace(m.clientURL, "http:", "https:", 1)
		if err := ca.IssueMember(dir, m.name, nil); err != nil {
			t.Fatal(err)
		}
		m.extra = []string{"--discovery", token, "--max-voters", "3",
			"--cert-file", filepath.Join(dir, m.name+".crt"), "--key-file", filepath.Join(dir, m.name+".key"),
			"--trusted-ca-file", filepath.Join(dir, "ca.crt")}
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	httpc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}
	defer func() { httpc.Transport = nil }()
	for i := 0; i < 3; i++ {
		c.start(i, "new")
	}
	c.waitLeader(3)
	c.start(3, "new")
	c.waitLeader()
	c.mustPut("/via-discovery", "ok")
	for attempt := 0; ; attempt++ {
		st, r, _ := kvDo(context.Background(), c.members[3].clientURL, "GET", "/via-discovery", nil)
		if st == 200 && r.Node.Value == "ok" {
			break
		}
		if attempt > 300 {
			t.Fatalf("late member never served the key: %d", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, r, err := kvDo(context.Background(), c.members[3].clientURL, "PUT", "/from-learner", url.Values{"value": {"w"}})
	if err != nil || st != 201 || r.Node.Value != "w" {
		t.Fatalf("admin write through the late member: %d %+v %v", st, r, err)
	}
}
