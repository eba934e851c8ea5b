package main

// How pithctl reaches pithd: over mutual TLS with --cacert/--cert/--key
// (etcdctl v3's names; v2's --ca-file/--cert-file/--key-file and fleetctl's
// work too), or, on the node itself, through root's unix socket, which
// needs no certificate.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

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
// TLS settings. The returned RoundTripper is tr, watching for a TLS port
// that was sent plain HTTP (see tlsPort).
func transport(endpoint string, tr *http.Transport) (base string, rt *tlsPort, err error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "unix" && u.Scheme != "http" && u.Scheme != "https") {
		return "", nil, fmt.Errorf("bad endpoint %q: use https://HOST:PORT, http://HOST:PORT or unix:///PATH", endpoint)
	}
	rt = &tlsPort{Transport: tr}
	if u.Scheme == "unix" {
		sock := u.Path
		if sock == "" {
			sock = u.Host
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		return "http://localhost", rt, nil
	}
	if u.Scheme == "https" || !kvOpts.tls.Empty() {
		if tr.TLSClientConfig, err = kvOpts.tls.ClientConfig(); err != nil {
			return "", nil, err
		}
		rt.withCert = kvOpts.tls.CertFile != ""
	}
	if u.Scheme == "http" && rt.withCert && strings.TrimSuffix(endpoint, "/") == defaultEndpoint {
		// With a certificate the default endpoint is a node's TLS port:
		// the first request (a `kv set` value) goes over TLS too.
		rt.tlsHosts = map[string]bool{u.Host: true}
	}
	return strings.TrimSuffix(endpoint, "/"), rt, nil
}

// defaultEndpoint is the client port on this machine, which pithctl dials
// when no endpoint is given and root's socket is out of reach.
const defaultEndpoint = "http://127.0.0.1:2379"

// isLoopback reports whether host (of a URL, without port) is this
// machine: only there may plain HTTP be answered by going over TLS.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errTLSPort: plain HTTP went to a port that speaks only TLS, and pithctl
// has no client certificate to speak TLS with.
var errTLSPort = errors.New("this node's KV requires a client certificate: run as root (sudo pithctl ...) to go through pithd's socket, or pass --cacert/--cert/--key (or PITHCTL_CACERT, PITHCTL_CERT, PITHCTL_KEY) with the cluster's admin or reader certificate")

// goTLSRefusal is what Go's TLS server (pithd's client port under a
// cluster CA) answers a plain HTTP request with, as a 400.
const goTLSRefusal = "Client sent an HTTP request to an HTTPS server"

// tlsPort is the transport pithctl's clients use. On a node whose cluster
// has a CA, a plain user has no access to root's socket and falls back to
// http://127.0.0.1:2379, which speaks only TLS: the answer is a bare "400
// Bad Request". tlsPort recognises that answer: with a client certificate
// it sends the request again over TLS (and every later one to that host);
// without one it fails with errTLSPort, which says what to do. Only a
// loopback endpoint is upgraded so: the request (a `kv set` value) went
// out plain, which the user chose by writing http:// for another host,
// and pithctl does not silently switch that endpoint to TLS.
type tlsPort struct {
	*http.Transport // embedded: etcd's client also calls CancelRequest
	withCert        bool
	mu              sync.Mutex
	tlsHosts        map[string]bool
}

func (t *tlsPort) isTLS(host string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tlsHosts[host]
}

// RoundTrip implements http.RoundTripper.
func (t *tlsPort) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" && t.isTLS(r.URL.Host) {
		// Nothing of r went out yet: its body goes over TLS only.
		r2 := r.Clone(r.Context())
		r2.URL.Scheme = "https"
		return t.Transport.RoundTrip(r2)
	}
	resp, err := t.Transport.RoundTrip(r)
	if err != nil || r.URL.Scheme != "http" || resp.StatusCode != http.StatusBadRequest {
		return resp, err
	}
	head := make([]byte, 128)
	n, _ := io.ReadFull(resp.Body, head)
	if !strings.Contains(string(head[:n]), goTLSRefusal) {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head[:n]), resp.Body), resp.Body}
		return resp, nil
	}
	resp.Body.Close()
	if !isLoopback(r.URL.Hostname()) {
		return nil, fmt.Errorf("%s speaks only TLS and was sent plain HTTP (the endpoint says http://): use https://%s with --cacert/--cert/--key", r.URL.Host, r.URL.Host)
	}
	if !t.withCert {
		return nil, fmt.Errorf("%s speaks only TLS: %w", r.URL.Host, errTLSPort)
	}
	t.mu.Lock()
	if t.tlsHosts == nil {
		t.tlsHosts = map[string]bool{}
	}
	t.tlsHosts[r.URL.Host] = true
	t.mu.Unlock()
	return t.overTLS(r)
}

// overTLS sends r again to the same host over https.
func (t *tlsPort) overTLS(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.URL.Scheme = "https"
	if r.Body != nil && r.Body != http.NoBody {
		if r.GetBody == nil {
			return nil, fmt.Errorf("%s speaks only TLS: use https://%s", r.URL.Host, r.URL.Host)
		}
		b, err := r.GetBody()
		if err != nil {
			return nil, err
		}
		r2.Body = b
	}
	return t.Transport.RoundTrip(r2)
}

// etcdKV is the updater's KV view (reboot locks) through endpoints, with
// the TLS flags or root's socket.
func etcdKV(endpoints []string) (*rebootlock.EtcdKV, error) {
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("no KV endpoint")
	}
	base, rt, err := transport(endpoints[0], &http.Transport{})
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(endpoints[0], "unix:") {
		endpoints = []string{base}
	}
	c, err := etcd.New(etcd.Config{Endpoints: endpoints, Transport: rt})
	if err != nil {
		return nil, fmt.Errorf("KV client: %w", err)
	}
	return &rebootlock.EtcdKV{Keys: etcd.NewKeysAPI(c)}, nil
}
