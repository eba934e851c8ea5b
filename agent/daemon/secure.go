package daemon

// pithd's security mode, decided once from the flags: with a cluster CA
// (--trusted-ca-file) every TCP port is mutual TLS and every request is
// checked against agent/authz's table; without one pithd is open to
// whoever reaches it, so by default it listens on loopback only and warns
// about any other plain-HTTP listener. Root on the node reaches everything
// through --unix-socket without a certificate.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/agent/authz"
	"github.com/pith-os/pith/agent/cluster"
	"github.com/pith-os/pith/pki"
)

// Secure reports whether a cluster CA is configured.
func (f *KVConfig) Secure() bool { return f.ClientTLS.TrustedCAFile != "" }

// applySecurity settles the TLS settings before anything listens. With a
// CA: client certificates are required on both ports, the peer port uses
// the client port's files unless --peer-* name others and takes member
// certificates only, loopback http:// URLs (the defaults) become https://
// and any other http:// URL is an error. Without: a warning for each
// plain-HTTP listener that is not loopback.
func (f *KVConfig) applySecurity(log *slog.Logger) error {
	if !f.Secure() {
		if f.PeerTLS.TrustedCAFile != "" {
			return errors.New("--peer-trusted-ca-file without --trusted-ca-file: give the cluster CA to both ports")
		}
		open := false
		for _, u := range append(append([]string(nil), f.ListenClientURLs...), f.ListenPeerURLs...) {
			if p, err := url.Parse(u); err == nil && p.Scheme == "http" && !loopback(p.Hostname()) {
				open = true
				log.Warn("plain HTTP without a cluster CA: whoever reaches this address controls the cluster; set up one with `pith cluster init`", "url", u)
			}
		}
		if !open {
			log.Info("no cluster CA configured: listening on loopback only")
		}
		return nil
	}
	if f.ClientTLS.CertFile == "" || f.ClientTLS.KeyFile == "" {
		return errors.New("--trusted-ca-file (a cluster CA) needs --cert-file and --key-file: this member's certificate (`pith cluster issue`)")
	}
	f.ClientTLS.ClientCertAuth = true
	if f.PeerTLS.CertFile == "" && f.PeerTLS.KeyFile == "" {
		f.PeerTLS.CertFile, f.PeerTLS.KeyFile = f.ClientTLS.CertFile, f.ClientTLS.KeyFile
	}
	if f.PeerTLS.TrustedCAFile == "" {
		f.PeerTLS.TrustedCAFile = f.ClientTLS.TrustedCAFile
	}
	f.PeerTLS.ClientCertAuth = true
	f.PeerTLS.Role = pki.Member
	// Our own certificate must be a member's: peers refuse anything else.
	rl, err := pki.NewReloader(f.PeerTLS.CertFile, f.PeerTLS.KeyFile, "")
	if err != nil {
		return err
	}
	if role, err := pki.RoleOf(rl.Leaf()); err != nil || role != pki.Member {
		return fmt.Errorf("%s: this member's certificate must have the member role (role %q %v); issue it with `pith cluster issue`", f.PeerTLS.CertFile, role, err)
	}
	var bad []string
	upgrade := func(urls []string) []string {
		out := make([]string, len(urls))
		for i, u := range urls {
			out[i] = u
			p, err := url.Parse(u)
			if err != nil || p.Scheme != "http" {
				continue
			}
			if !loopback(p.Hostname()) {
				bad = append(bad, u)
				continue
			}
			p.Scheme = "https"
			out[i] = p.String()
		}
		return out
	}
	f.ListenClientURLs = upgrade(f.ListenClientURLs)
	f.AdvertiseClientURLs = upgrade(f.AdvertiseClientURLs)
	f.ListenPeerURLs = upgrade(f.ListenPeerURLs)
	f.InitialAdvertisePeerURLs = upgrade(f.InitialAdvertisePeerURLs)
	if f.InitialCluster != "" {
		var parts []string
		for _, part := range strings.Split(f.InitialCluster, ",") {
			if name, u, ok := strings.Cut(strings.TrimSpace(part), "="); ok {
				part = name + "=" + upgrade([]string{u})[0]
			}
			parts = append(parts, part)
		}
		f.InitialCluster = strings.Join(parts, ",")
	}
	if len(bad) > 0 {
		return fmt.Errorf("a cluster CA is configured (--trusted-ca-file), so every client and peer URL must be https://: %s", strings.Join(bad, ", "))
	}
	log.Info("cluster CA configured: mutual TLS with roles on every port", "ca", f.ClientTLS.TrustedCAFile, "cert", f.ClientTLS.CertFile)
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// guard is the authorization every listener serves through.
func (d *Daemon) guard(h http.Handler) http.Handler {
	return authz.Guard{Secure: d.cfg.KV.Secure(), FromPeer: cluster.FromPeer, FromSocket: fromSocket}.Wrap(h)
}

type socketCtxKey struct{}

// fromSocket reports a request that came through root's unix socket (the
// mark is set by that server's ConnContext, never read from the request).
func fromSocket(r *http.Request) bool {
	v, _ := r.Context().Value(socketCtxKey{}).(bool)
	return v
}

// serveRootSocket serves h to root on the unix socket sock (mode 0600)
// until ctx ends.
func (d *Daemon) serveRootSocket(ctx context.Context, sock string, h http.Handler) error {
	ln, err := listenRootSocket(sock)
	if err != nil {
		return fmt.Errorf("--unix-socket %s: %w", sock, err)
	}
	srv := clientServer(h)
	srv.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, socketCtxKey{}, true)
	}
	go srv.Serve(d.limitConns(ln))
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(sock)
	}()
	d.log.Info("root API on unix socket (no certificate, mode 0600)", "path", sock)
	return nil
}

// listenRootSocket listens on the unix socket sock, mode 0600 (connecting
// needs write permission: root only). The socket is made under a
// temporary name, restricted, then renamed into place, so it is never
// reachable with a wider mode; a stale socket at sock is replaced.
func listenRootSocket(sock string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		return nil, err
	}
	tmp := sock + ".new"
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	// Renamed below: closing must not unlink the final path's new owner.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, sock); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	return ln, nil
}
