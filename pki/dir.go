package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files of a cluster directory (`pith cluster init --dir DIR`).
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Paths where the node's user-data puts its credentials (NodeCloudConfig).
const (
	NodeDir      = "/etc/pith/tls"
	NodeCA       = NodeDir + "/ca.crt"
	NodeCert     = NodeDir + "/member.crt"
	NodeCertKey  = NodeDir + "/member.key"
	clientSuffix = ".crt"
	keySuffix    = ".key"
)

// Init creates a cluster directory: the CA, and the admin and reader client
// certificates. It refuses a directory that already holds a CA (a second
// CA would silently lock out every node of the first).
func Init(dir, clusterName string) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return nil, fmt.Errorf("%s already holds a cluster CA; issue certificates from it with `pith cluster issue`", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if clusterName == "" {
		clusterName = "pith"
	}
	ca, err := NewCA(clusterName+" cluster CA", time.Now())
	if err != nil {
		return nil, err
	}
	kp, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	// Certificates first, the CA key last: a directory without ca.key is
	// not taken for an initialised one, so an interrupted init can rerun.
	for _, role := range []Role{Admin, Reader} {
		if err := ca.IssueFiles(dir, string(role), Request{Name: string(role), Role: role}); err != nil {
			return nil, err
		}
	}
	if err := WriteFile(filepath.Join(dir, CACertFile), ca.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	if err := WriteFile(filepath.Join(dir, CAKeyFile), kp, 0o600); err != nil {
		return nil, err
	}
	return ca, nil
}

// IssueFiles issues req and writes DIR/NAME.crt (0644) and DIR/NAME.key
// (0600), each replaced atomically (a member watching them reloads a whole
// pair, never half a file).
func (ca *CA) IssueFiles(dir, name string, req Request) error {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "ca" {
		return fmt.Errorf("certificate name %q: want a plain file name other than %q", name, "ca")
	}
	c, k, err := ca.Issue(req)
	if err != nil {
		return err
	}
	// Key first: a reader that sees the new certificate finds its key.
	if err := WriteFile(filepath.Join(dir, name+keySuffix), k, 0o600); err != nil {
		return err
	}
	return WriteFile(filepath.Join(dir, name+clientSuffix), c, 0o644)
}

// IssueMember issues a member certificate for a node named name with the
// addresses and DNS names peers and clients dial it by (loopback and
// localhost always: pithctl on the node).
func (ca *CA) IssueMember(dir, name string, ips []net.IP, dns ...string) error {
	all := append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, ips...)
	return ca.IssueFiles(dir, name, Request{Name: name, Role: Member, IPs: all, DNSNames: append([]string{"localhost"}, dns...)})
}

// WriteFile writes b to path through a temporary file and a rename, so the
// path holds the old content or the new one, never a part, and a key never
// exists with a wider mode than perm.
func WriteFile(path string, b []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// NodeCloudConfig is the cloud-config a node needs to join the cluster
// with the member certificate DIR/NAME.crt: the CA and its own key pair
// under /etc/pith/tls, and pith.kv.tls pointing at them.
func NodeCloudConfig(dir, name string) (string, error) {
	files := []struct{ path, src, perm string }{
		{NodeCA, filepath.Join(dir, CACertFile), "0644"},
		{NodeCert, filepath.Join(dir, name+clientSuffix), "0644"},
		{NodeCertKey, filepath.Join(dir, name+keySuffix), "0600"},
	}
	var b strings.Builder
	b.WriteString("#cloud-config\nwrite_files:\n")
	for _, f := range files {
		data, err := os.ReadFile(f.src)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("%s: missing (run `pith cluster issue --dir %s --name %s --ip ...`)", f.src, dir, name)
			}
			return "", err
		}
		fmt.Fprintf(&b, "  - path: %s\n    permissions: \"%s\"\n    owner: root:root\n    content: |\n", f.path, f.perm)
		for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
			fmt.Fprintf(&b, "      %s\n", line)
		}
	}
	fmt.Fprintf(&b, "pith:\n  kv:\n    tls:\n      cert_file: %s\n      key_file: %s\n      trusted_ca_file: %s\n      client_cert_auth: true\n", NodeCert, NodeCertKey, NodeCA)
	return b.String(), nil
}
