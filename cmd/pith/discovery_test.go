package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/agent/kv"
	"github.com/pith-os/pith/discovery"
	"github.com/pith-os/pith/pki"
)

// TestDiscoveryOverTLS serves discovery with a certificate from a cluster
// CA (`pith discovery serve --cert-file/--key-file`): `pith discovery new`
// gets a token over https only when it trusts that CA (--cacert).
func TestDiscoveryOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Init(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.IssueMember(dir, "discovery", []net.IP{net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := discoveryListen("127.0.0.1:0", filepath.Join(dir, "discovery.crt"), ""); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("cert without key: %v", err)
	}
	ln, scheme, err := discoveryListen("127.0.0.1:0", filepath.Join(dir, "discovery.crt"), filepath.Join(dir, "discovery.key"))
	if err != nil || scheme != "https" {
		t.Fatalf("listen: %v %s", err, scheme)
	}
	base := "https://" + ln.Addr().String()
	d, err := discovery.Open(base, discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	if out, err := runPith(t, "discovery", "new", "--server", base, "--size", "3"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without --cacert: %v %s", err, out)
	}
	out, err := runPith(t, "discovery", "new", "--server", base, "--size", "3", "--cacert", filepath.Join(dir, "ca.crt"))
	if err != nil || !strings.HasPrefix(out, base+kv.KeysPrefix+discovery.RegistryPrefix+"/") {
		t.Fatalf("with --cacert: %v %q", err, out)
	}
}
