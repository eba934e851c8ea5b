package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A node's cloud-config holds its member key: written 0600 with --out, and
// a file stdout was redirected to (created 0644 by the shell) is made 0600
// before the key goes in.
func TestClusterIssueKeyFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster")
	if out, err := runPith(t, "cluster", "init", "--dir", dir); err != nil {
		t.Fatalf("cluster init: %v\n%s", err, out)
	}
	yaml := filepath.Join(t.TempDir(), "node1-tls.yaml")
	out, err := runPith(t, "cluster", "issue", "--dir", dir, "--name", "node1", "--ip", "10.0.0.11", "--out", yaml)
	if err != nil {
		t.Fatalf("cluster issue --out: %v\n%s", err, out)
	}
	assertSecretFile(t, yaml)

	redirected := filepath.Join(t.TempDir(), "redirected.yaml")
	f, err := os.OpenFile(redirected, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(yaml)
	if err := printSecret(f, string(b)); err != nil {
		t.Fatalf("printSecret to a 0644 file: %v", err)
	}
	f.Close()
	assertSecretFile(t, redirected)

	// A pipe is passed through unchanged.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := printSecret(w, "key\n"); err != nil {
		t.Fatalf("printSecret to a pipe: %v", err)
	}
	w.Close()
	buf := make([]byte, 16)
	if n, _ := r.Read(buf); string(buf[:n]) != "key\n" {
		t.Errorf("pipe got %q", buf[:n])
	}
}

func assertSecretFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if fi.Mode().Perm() != 0o600 || !strings.Contains(string(b), "PRIVATE KEY") || !strings.Contains(string(b), "/etc/pith/tls/member.key") {
		t.Errorf("%s: mode %v, want 0600 with the member key in it:\n%.200s", path, fi.Mode().Perm(), b)
	}
}
