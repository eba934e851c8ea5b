package cluster

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/pki"
)

// A discovery service serving a certificate from the cluster CA is
// verified with it (and refused without it), and the node presents no
// certificate of its own to it.
func TestDiscoveryClientTrustsClusterCA(t *testing.T) {
	ca, err := pki.NewCA("test cluster CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := ca.Issue(pki.Request{Name: "discovery", Role: pki.Member, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	var sawCert bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawCert = len(r.TLS.PeerCertificates) > 0
		w.Write([]byte(`{"node":{"key":"/x"}}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, ca, err string
	}{
		{"cluster CA", caFile, ""},
		{"system roots only", "", "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DiscoveryClient(tc.ca)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Get(srv.URL + "/v2/keys/_etcd/registry/x")
			if err == nil {
				resp.Body.Close()
			}
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("GET: %v, want error containing %q", err, tc.err)
			}
			if sawCert {
				t.Error("the discovery client presented a certificate")
			}
		})
	}
	if _, err := DiscoveryClient(filepath.Join(t.TempDir(), "missing.crt")); err == nil {
		t.Error("a missing CA file was accepted")
	}
}
