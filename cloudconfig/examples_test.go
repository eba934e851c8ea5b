package cloudconfig

import (
	"os"
	"testing"
)

// Pith's own example node config (cloudconfig/README) is the secure setup:
// it validates with no warning at all, the plain-HTTP one included, and
// turns mutual TLS on. (testdata/full.yaml is a CoreOS user's config with
// every key, plain HTTP and its warning: TestParseFull.)
func TestPithClusterExampleValidates(t *testing.T) {
	data, err := os.ReadFile("testdata/pith-cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if rep := Validate(data); len(rep.Entries) != 0 {
		t.Fatalf("pith-cluster.yaml:\n%s", rep.Format("pith-cluster.yaml"))
	}
	c, rep := ParseCloudConfig(data)
	if rep.HasErrors() || c == nil {
		t.Fatal(rep.Format("pith-cluster.yaml"))
	}
	// A trusted CA means pithd requires client certificates from it.
	if tls := EffectiveKVTLS(c); !tls.On() || tls.TrustedCAFile == "" {
		t.Errorf("KV TLS %+v: want a certificate and the cluster CA", tls)
	}
}
