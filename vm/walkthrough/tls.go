package walkthrough

// The cluster's security as the README's Security section sets it up: the
// workstation holds the CA (pith cluster init), each node gets its own
// member certificate in its user-data (pith cluster issue), every KV port
// is mutual TLS, and the workstation reaches the nodes with the admin
// certificate.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/pki"
)

// ClusterDir holds the cluster's CA and client certificates (pith cluster
// init) and the nodes' issued cloud-configs.
func (d *Demo) ClusterDir() string { return filepath.Join(d.cfg.StateDir, "cluster") }

// initCluster runs `pith cluster init` and gives the walkthrough's own
// requests to the nodes the admin certificate.
func (d *Demo) initCluster(ctx context.Context) error {
	args := []string{"cluster", "init", "--dir", d.ClusterDir(), "--name", "demo"}
	out, err := d.runPith(ctx, args...)
	if err != nil {
		return err
	}
	d.transcript("", "pith "+strings.Join(args, " "), out)
	d.client, err = d.HTTPClient("admin")
	return err
}

// HTTPClient is an HTTP client that trusts the cluster CA and presents the
// cluster directory's certificate name (admin, reader; "" for none).
func (d *Demo) HTTPClient(name string) (*http.Client, error) {
	ca, err := os.ReadFile(filepath.Join(d.ClusterDir(), pki.CACertFile))
	if err != nil {
		return nil, err
	}
	cfg := pki.Base()
	cfg.RootCAs = x509.NewCertPool()
	if !cfg.RootCAs.AppendCertsFromPEM(ca) {
		return nil, errors.New("cluster ca.crt holds no certificate")
	}
	if name != "" {
		c, err := tls.LoadX509KeyPair(d.certFile(name), d.keyFile(name))
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

func (d *Demo) certFile(name string) string { return filepath.Join(d.ClusterDir(), name+".crt") }
func (d *Demo) keyFile(name string) string  { return filepath.Join(d.ClusterDir(), name+".key") }

// issueMember runs `pith cluster issue` for node i (its private address;
// loopback is always in the certificate) into a 0600 file, and returns
// its user-data part.
func (d *Demo) issueMember(ctx context.Context, i int) (Member, error) {
	out := filepath.Join(d.ClusterDir(), d.NodeName(i)+"-tls.yaml")
	args := []string{"cluster", "issue", "--dir", d.ClusterDir(), "--name", d.NodeName(i), "--ip", privateIP(i)}
	f, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return Member{}, err
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, d.pith(), args...)
	cmd.Stdout, cmd.Stderr = f, &stderr
	err = cmd.Run()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Member{}, fmt.Errorf("pith %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	d.transcript("", "pith "+strings.Join(args, " ")+" > "+out, "")
	b, err := os.ReadFile(out)
	if err != nil {
		return Member{}, err
	}
	return ParseIssued(string(b))
}

// hostEnv is the environment the workstation's pithctl reaches node i
// with, as the README's Security section exports it: the cluster CA and
// the certificate name ("" for none).
func (d *Demo) hostEnv(i int, name string) []string {
	env := []string{"PITHCTL_ENDPOINTS=" + d.apiURL(i), "PITHCTL_CACERT=" + filepath.Join(d.ClusterDir(), pki.CACertFile)}
	if name == "" {
		return append(env, "PITHCTL_CERT=", "PITHCTL_KEY=")
	}
	return append(env, "PITHCTL_CERT="+d.certFile(name), "PITHCTL_KEY="+d.keyFile(name))
}

// hostPithctl runs the workstation's pithctl against node i's forwarded
// client port with the certificate name ("" for none) and shows it with
// the variables that differ from the exported ones (prefix).
// --no-sync: the member list names the nodes' private addresses, which
// the workstation does not reach.
func (d *Demo) hostPithctl(ctx context.Context, i int, name, prefix string, args ...string) (string, error) {
	args = append(args, "--no-sync")
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d.cfg.BinDir, "pithctl"), args...)
	cmd.Env = append(os.Environ(), d.hostEnv(i, name)...)
	b, err := cmd.CombinedOutput()
	out := strings.TrimSpace(string(b))
	d.transcript("", prefix+"pithctl "+strings.Join(args, " "), out)
	if err != nil {
		return out, fmt.Errorf("pithctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}
