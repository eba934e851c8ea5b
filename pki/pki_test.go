package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInitFilesAndRoles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	ca, err := Init(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"ca.crt": 0o644, "ca.key": 0o600, "admin.crt": 0o644, "admin.key": 0o600, "reader.crt": 0o644, "reader.key": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", fi.Mode().Perm())
	}
	if _, err := Init(dir, "test"); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("second init: %v", err)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Fatal("LoadCA read another CA")
	}
	if err := loaded.IssueMember(dir, "node1", []net.IP{net.ParseIP("10.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, tc := range []struct {
		name string
		role Role
		eku  x509.ExtKeyUsage
		host string
	}{
		{"admin", Admin, x509.ExtKeyUsageClientAuth, ""},
		{"reader", Reader, x509.ExtKeyUsageClientAuth, ""},
		{"node1", Member, x509.ExtKeyUsageServerAuth, "10.0.0.1"},
		{"node1", Member, x509.ExtKeyUsageClientAuth, "127.0.0.1"},
	} {
		b, _ := os.ReadFile(filepath.Join(dir, tc.name+".crt"))
		certs, err := ParseCerts(b)
		if err != nil {
			t.Fatal(err)
		}
		c := certs[0]
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{tc.eku}, DNSName: tc.host}); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if r, err := RoleOf(c); err != nil || r != tc.role {
			t.Errorf("%s: role %q %v, want %q", tc.name, r, err, tc.role)
		}
	}
	// A client certificate cannot serve: no serverAuth.
	b, _ := os.ReadFile(filepath.Join(dir, "admin.crt"))
	admin, _ := ParseCerts(b)
	if _, err := admin[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("admin certificate verifies as a server")
	}
}

func TestIssueRejects(t *testing.T) {
	ca, err := NewCA("t", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"x", Request{Name: "x", Role: "root"}, "role"},
		{"x", Request{Role: Admin}, "name"},
		{"ca", Request{Name: "ca", Role: Admin}, "file name"},
		{"../x", Request{Name: "x", Role: Admin}, "file name"},
	} {
		err := ca.IssueFiles(dir, tc.name, tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %+v: %v, want %q", tc.name, tc.req, err, tc.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("refused requests left %d files", len(ents))
	}
}

func TestLoadCAMismatch(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if _, err := Init(a, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(b, "b"); err != nil {
		t.Fatal(err)
	}
	kb, _ := os.ReadFile(filepath.Join(b, CAKeyFile))
	os.WriteFile(filepath.Join(a, CAKeyFile), kb, 0o600)
	if _, err := LoadCA(a); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("mismatched key: %v", err)
	}
	if _, err := LoadCA(t.TempDir()); err == nil || !strings.Contains(err.Error(), "pith cluster init") {
		t.Fatalf("empty dir: %v", err)
	}
}

func TestNodeCloudConfig(t *testing.T) {
	dir := t.TempDir()
	ca, err := Init(dir, "t")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NodeCloudConfig(dir, "node1"); err == nil || !strings.Contains(err.Error(), "pith cluster issue") {
		t.Fatalf("no member cert yet: %v", err)
	}
	ca.IssueMember(dir, "node1", nil)
	s, err := NodeCloudConfig(dir, "node1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"path: " + NodeCertKey + "\n    permissions: \"0600\"", "BEGIN PRIVATE KEY", "trusted_ca_file: " + NodeCA, "client_cert_auth: true"} {
		if !strings.Contains(s, want) {
			t.Errorf("cloud-config lacks %q:\n%s", want, s)
		}
	}
}

// handshake runs one TLS handshake between a server config and a client
// config over loopback and returns the client's and the server's errors.
func handshake(t *testing.T, srv, cli *tls.Config) (error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		sc := tls.Server(c, srv)
		err = sc.Handshake()
		if err == nil {
			// Take the client's byte first: closing with it unread
			// resets the connection, and the client reads a reset
			// instead of EOF.
			sc.Read(make([]byte, 1))
		}
		srvErr <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, cli)
	cerr := tc.Handshake()
	if cerr == nil {
		// TLS 1.3 reports a refused client certificate on the first read.
		tc.Write([]byte("x"))
		_, cerr = tc.Read(make([]byte, 1))
		if cerr != nil && strings.Contains(cerr.Error(), "EOF") {
			cerr = nil
		}
	}
	return cerr, <-srvErr
}

func TestHandshakeRoles(t *testing.T) {
	dir := t.TempDir()
	ca, err := Init(dir, "t")
	if err != nil {
		t.Fatal(err)
	}
	ca.IssueMember(dir, "n1", nil)
	ca.IssueMember(dir, "n2", nil)
	expired := Request{Name: "old", Role: Admin, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}
	if err := ca.IssueFiles(dir, "old", expired); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if _, err := Init(other, "other"); err != nil {
		t.Fatal(err)
	}
	load := func(d, name, ca string) *Reloader {
		r, err := NewReloader(filepath.Join(d, name+".crt"), filepath.Join(d, name+".key"), filepath.Join(d, ca))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	n1 := load(dir, "n1", CACertFile)
	for _, tc := range []struct {
		name   string
		server Role // role the server requires of clients
		client *tls.Config
		ok     bool
	}{
		{"member on peer port", Member, load(dir, "n2", CACertFile).ClientConfig(Member), true},
		{"admin on client port", "", load(dir, "admin", CACertFile).ClientConfig(Member), true},
		{"admin on peer port", Member, load(dir, "admin", CACertFile).ClientConfig(Member), false},
		{"reader on peer port", Member, load(dir, "reader", CACertFile).ClientConfig(Member), false},
		{"other CA's admin", "", load(other, "admin", CACertFile).ClientConfig(""), false},
		{"expired admin", "", load(dir, "old", CACertFile).ClientConfig(Member), false},
		{"no certificate", "", &tls.Config{RootCAs: n1.pool}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.client.ServerName = "127.0.0.1"
			cerr, serr := handshake(t, n1.ServerConfig(tc.server), tc.client)
			if tc.ok && (cerr != nil || serr != nil) {
				t.Fatalf("refused: client %v, server %v", cerr, serr)
			}
			if !tc.ok && serr == nil {
				t.Fatalf("server accepted (client err %v)", cerr)
			}
		})
	}
	// A client checks that the server it dials is a member: an admin
	// certificate cannot pose as a node.
	adm := load(dir, "admin", CACertFile)
	cli := n1.ClientConfig(Member)
	// Skip the name check so that the role check is what refuses.
	cli.InsecureSkipVerify = true
	if cerr, _ := handshake(t, adm.ServerConfig(""), cli); cerr == nil || !strings.Contains(cerr.Error(), "role admin") {
		t.Fatalf("client dialing an admin certificate as a server: %v", cerr)
	}
}

func TestReloaderPicksUpRenewal(t *testing.T) {
	dir := t.TempDir()
	ca, err := Init(dir, "t")
	if err != nil {
		t.Fatal(err)
	}
	ca.IssueMember(dir, "n1", nil)
	r, err := NewReloader(filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key"), filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	before := r.Leaf().SerialNumber
	ca.IssueMember(dir, "n1", nil)
	// SIGHUP path: an explicit reload.
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if r.Leaf().SerialNumber.Cmp(before) == 0 {
		t.Fatal("Reload kept the old certificate")
	}
	// File-watch path: the next handshake after reloadEvery.
	before = r.Leaf().SerialNumber
	ca.IssueMember(dir, "n1", nil)
	r.mu.Lock()
	r.checked = time.Time{}
	r.mu.Unlock()
	if r.Leaf().SerialNumber.Cmp(before) == 0 {
		t.Fatal("a changed file was not reloaded")
	}
	// A broken renewal keeps the old pair serving and reports why.
	before = r.Leaf().SerialNumber
	os.WriteFile(filepath.Join(dir, "n1.crt"), []byte("garbage"), 0o644)
	if err := r.Reload(); err == nil {
		t.Fatal("reload of garbage succeeded")
	}
	if r.Leaf().SerialNumber.Cmp(before) != 0 || r.Err() == nil {
		t.Fatal("a failed reload dropped the serving certificate or its error")
	}
}
