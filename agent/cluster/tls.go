package cluster

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/pith-os/pith/pki"
)

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
