package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/pki"
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
	resetFlags(t, "cluster", "issue")
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

// --role admin/reader issues (renews) a client certificate with that role
// and no addresses; a member needs --ip, and an unknown role is refused.
func TestClusterIssueClientRoles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster")
	if out, err := runPith(t, "cluster", "init", "--dir", dir); err != nil {
		t.Fatalf("cluster init: %v\n%s", err, out)
	}
	old, _ := os.ReadFile(filepath.Join(dir, "admin.crt"))
	for _, tc := range []struct {
		args []string
		role pki.Role
		err  string
	}{
		{[]string{"--name", "admin", "--role", "admin"}, pki.Admin, ""},
		{[]string{"--name", "grafana", "--role", "reader"}, pki.Reader, ""},
		{[]string{"--name", "x", "--role", "root"}, "", "want member, admin or reader"},
		{[]string{"--name", "y", "--role", "reader", "--ip", "10.0.0.1"}, "", "has no --ip"},
		{[]string{"--name", "z", "--role", "member"}, "", "--ip"},
	} {
		resetFlags(t, "cluster", "issue")
		out, err := runPith(t, append([]string{"cluster", "issue", "--dir", dir}, tc.args...)...)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, out)
		}
		name := tc.args[1]
		b, err := os.ReadFile(filepath.Join(dir, name+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		certs, err := pki.ParseCerts(b)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := pki.RoleOf(certs[0]); err != nil || r != tc.role || len(certs[0].IPAddresses) != 0 {
			t.Errorf("%s.crt: role %v %v, IPs %v; want %s without addresses", name, r, err, certs[0].IPAddresses, tc.role)
		}
		assertMode(t, filepath.Join(dir, name+".key"), 0o600)
	}
	if renewed, _ := os.ReadFile(filepath.Join(dir, "admin.crt")); string(renewed) == string(old) {
		t.Error("admin.crt was not renewed")
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
		t.Errorf("%s: %v %v, want mode %v", path, fi, err, want)
	}
}

// resetFlags puts the flags of the command at path back to their defaults:
// cobra keeps values (and appends to slices) between runs in one process.
func resetFlags(t *testing.T, path ...string) {
	t.Helper()
	c, _, err := rootCmd.Find(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			err = sv.Replace(nil)
		} else {
			err = f.Value.Set(f.DefValue)
		}
		if err != nil {
			t.Fatalf("reset --%s: %v", f.Name, err)
		}
		f.Changed = false
	})
}
