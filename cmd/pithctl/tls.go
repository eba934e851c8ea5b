package main

// How pithctl reaches pithd: over mutual TLS with --cacert/--cert/--key
// (etcdctl v3's names; v2's --ca-file/--cert-file/--key-file and fleetctl's
// work too), or, on the node itself, through root's unix socket, which
// needs no certificate.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/pith-os/pith/rebootlock"
	"github.com/spf13/pflag"
	etcd "go.etcd.io/etcd/client/v2"
	"golang.org/x/sys/unix"
)

// nodeSocket is pithd's root-only socket on a node (pithd --unix-socket in
// the image's pithd.service).
const nodeSocket = "/run/pith/pithd.sock"

// socketEndpoint is what pithctl dials by default on a node: root's
// socket when this user may connect to it (connecting needs write
// permission), else "", so a plain user (core) falls back to the loopback
// client port as etcdctl does, instead of failing with "permission denied".
func socketEndpoint() string {
	fi, err := os.Stat(nodeSocket)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || unix.Access(nodeSocket, unix.W_OK) != nil {
		return ""
	}
	return "unix://" + nodeSocket
}

// tlsEnv is the first set variable of the names, for a flag's default.
func tlsEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// addTLSFlags adds the client certificate flags, bound to kvOpts.tls (one
// setting for every command group). legacy names the group's historical
// flag names (etcdctl v2 and fleetctl: ca-file, cert-file, key-file).
func addTLSFlags(fs *pflag.FlagSet) {
	t := &kvOpts.tls
	ca := tlsEnv("PITHCTL_CACERT", "ETCDCTL_CACERT", "ETCDCTL_CA_FILE", "FLEETCTL_CA_FILE")
	cert := tlsEnv("PITHCTL_CERT", "ETCDCTL_CERT", "ETCDCTL_CERT_FILE", "FLEETCTL_CERT_FILE")
	key := tlsEnv("PITHCTL_KEY", "ETCDCTL_KEY", "ETCDCTL_KEY_FILE", "FLEETCTL_KEY_FILE")
	fs.StringVar(&t.TrustedCAFile, "cacert", ca, "CA to verify the servers' certificates: the cluster's ca.crt (env PITHCTL_CACERT, ETCDCTL_CACERT)")
	fs.StringVar(&t.CertFile, "cert", cert, "client certificate: admin.crt or reader.crt from `pith cluster init` (env PITHCTL_CERT, ETCDCTL_CERT)")
	fs.StringVar(&t.KeyFile, "key", key, "client key (env PITHCTL_KEY, ETCDCTL_KEY)")
	fs.StringVar(&t.TrustedCAFile, "ca-file", ca, "same as --cacert (etcdctl v2, fleetctl)")
	fs.StringVar(&t.CertFile, "cert-file", cert, "same as --cert (etcdctl v2, fleetctl)")
	fs.StringVar(&t.KeyFile, "key-file", key, "same as --key (etcdctl v2, fleetctl)")
	for _, n := range []string{"ca-file", "cert-file", "key-file"} {
		_ = fs.MarkHidden(n)
	}
}

// transport reaches endpoint: a unix:// endpoint through its socket (the
// returned base is then http://localhost), anything else over TCP with the
// TLS settings.
func transport(endpoint string, tr *http.Transport) (base string, err error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "unix" && u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("bad endpoint %q: use https://HOST:PORT, http://HOST:PORT or unix:///PATH", endpoint)
	}
	if u.Scheme == "unix" {
		sock := u.Path
		if sock == "" {
			sock = u.Host
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		return "http://localhost", nil
	}
	if u.Scheme == "https" || !kvOpts.tls.Empty() {
		if tr.TLSClientConfig, err = kvOpts.tls.ClientConfig(); err != nil {
			return "", err
		}
	}
	return strings.TrimSuffix(endpoint, "/"), nil
}

// etcdKV is the updater's KV view (reboot locks) through endpoints, with
// the TLS flags or root's socket.
func etcdKV(endpoints []string) (*rebootlock.EtcdKV, error) {
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("no KV endpoint")
	}
	tr := &http.Transport{}
	base, err := transport(endpoints[0], tr)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(endpoints[0], "unix:") {
		endpoints = []string{base}
	}
	c, err := etcd.New(etcd.Config{Endpoints: endpoints, Transport: tr})
	if err != nil {
		return nil, fmt.Errorf("KV client: %w", err)
	}
	return &rebootlock.EtcdKV{Keys: etcd.NewKeysAPI(c)}, nil
}
