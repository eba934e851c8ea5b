package e2e

// TestDemo's checks of the cluster's security from the workstation: etcd's
// own v2 client and fleet's fleetctl with the admin certificate, a client
// without one, the reader's, and plain HTTP to the TLS port.

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	etcd "go.etcd.io/etcd/client/v2"

	"github.com/pith-os/pith/pki"
	"github.com/pith-os/pith/vm/walkthrough"
)

// demoFleetctl is fleet's fleetctl 1.0.0: PITH_FLEETCTL, else the one make
// unit built into the cache, else built here from hack/fleetctl.
func demoFleetctl(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("PITH_FLEETCTL"), filepath.Join(os.Getenv("HOME"), ".cache", "pith", "tools", "fleetctl")} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	bin := filepath.Join(t.TempDir(), "fleetctl")
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags", "-X github.com/coreos/fleet/version.Version=1.0.0", "github.com/coreos/fleet/fleetctl")
	cmd.Dir = filepath.Join("..", "hack", "fleetctl")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fleet's fleetctl: not in PITH_FLEETCTL or ~/.cache/pith/tools (make unit builds it) and go build failed: %v\n%s", err, out)
	}
	return bin
}

// demoSecurity checks node1's client port from the workstation once the
// cluster runs mongo@1 and mongo@2 (step 4 done).
func demoSecurity(t *testing.T, d *walkthrough.Demo) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	ep := d.APIURL(0)
	dir := d.ClusterDir()
	admin, err := d.HTTPClient("admin")
	if err != nil {
		t.Fatal(err)
	}

	// etcd's v2 client with the admin certificate: a write read back
	// on another node.
	c, err := etcd.New(etcd.Config{Endpoints: []string{ep}, Transport: admin.Transport.(*http.Transport)})
	if err != nil {
		t.Fatal(err)
	}
	keys := etcd.NewKeysAPI(c)
	if _, err := keys.Set(ctx, "/from-host", "admin", nil); err != nil {
		t.Errorf("etcd v2 client with the admin certificate: set: %v", err)
	} else if got, err := d.Exec(ctx, 1, "sudo pithctl kv get /from-host"); err != nil || got != "admin" {
		t.Errorf("/from-host on node2 = %q, %v; want admin", got, err)
	}

	// The reader's etcd client reads and is refused a write; the key
	// stays as it was.
	reader, err := d.HTTPClient("reader")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := etcd.New(etcd.Config{Endpoints: []string{ep}, Transport: reader.Transport.(*http.Transport)})
	if err != nil {
		t.Fatal(err)
	}
	rkeys := etcd.NewKeysAPI(rc)
	if r, err := rkeys.Get(ctx, "/from-host", nil); err != nil || r.Node.Value != "admin" {
		t.Errorf("reader's etcd client get: %v", err)
	}
	if _, err := rkeys.Set(ctx, "/from-host", "reader", nil); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("reader's etcd client set: %v, want forbidden", err)
	}
	if _, err := rkeys.Delete(ctx, "/message", nil); err == nil {
		t.Error("reader's etcd client deleted /message")
	}
	if r, err := keys.Get(ctx, "/from-host", nil); err != nil || r.Node.Value != "admin" {
		t.Errorf("/from-host after the reader's attempts: %v %+v", err, r)
	}

	// No certificate: the handshake fails; plain HTTP: 400, no data.
	none, err := d.HTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := none.Get(ep + "/v2/keys/message"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got %s", resp.Status)
	}
	if b, code, err := demoGet(strings.Replace(ep, "https://", "http://", 1) + "/v2/keys/message"); err == nil && (code != http.StatusBadRequest || strings.Contains(string(b), "hello")) {
		t.Errorf("plain HTTP to the TLS port: %d %s", code, b)
	}
	// An admin certificate another CA issued is refused too.
	otherCA, err := pki.NewCA("other cluster CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := otherCA.Issue(pki.Request{Name: "admin", Role: pki.Admin})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	other := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}}}}
	if resp, err := other.Get(ep + "/v2/keys/message"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Errorf("a certificate of another CA got %s %s", resp.Status, b)
	}

	// fleet's fleetctl with the admin certificate lists the three
	// machines and the units; without one it is refused.
	fc := demoFleetctl(t)
	tlsArgs := []string{"--endpoint", ep, "--request-timeout", "60", "--ca-file", filepath.Join(dir, "ca.crt"), "--cert-file", filepath.Join(dir, "admin.crt"), "--key-file", filepath.Join(dir, "admin.key")}
	out, err := exec.CommandContext(ctx, fc, append(tlsArgs, "list-machines", "--no-legend", "--full")...).CombinedOutput()
	if err != nil || len(strings.Split(strings.TrimSpace(string(out)), "\n")) != 3 {
		t.Errorf("fleetctl list-machines with the admin certificate: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, fc, append(tlsArgs, "list-units", "--no-legend")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mongo@1.service") {
		t.Errorf("fleetctl list-units with the admin certificate: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, fc, "--endpoint", ep, "--request-timeout", "20", "--ca-file", filepath.Join(dir, "ca.crt"), "list-units").CombinedOutput()
	if err == nil {
		t.Errorf("fleetctl without a certificate listed units:\n%s", out)
	}
}
