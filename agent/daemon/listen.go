package daemon

// Every listener and HTTP server pithd opens is made here: the client
// ports (--listen-client-urls, plain or TLS), the fleet API's unix socket
// and, through cluster.Node.Start, the peer port. Server timeouts, TLS and
// authorization of these listeners belong in this file.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/pith-os/pith/agent/cluster"
	"github.com/pith-os/pith/agent/kv"
)

func listenHostPort(u string) (string, *url.URL, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", nil, err
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		return "", nil, fmt.Errorf("URL %q: scheme must be http or https", u)
	}
	if p.Port() == "" {
		return "", nil, fmt.Errorf("URL %q: needs a port", u)
	}
	return p.Host, p, nil
}

// Every server that answers clients (client ports, the fleet socket, the
// unix socket) has the same bounds. Watches are long polls, so there is no
// ReadTimeout (net/http would cancel a request whose connection read times
// out) and no WriteTimeout: headers must arrive within 10 s (this also
// bounds a TLS handshake), a body within 30 s, and an idle keep-alive
// connection is closed after 2 min. Accept errors such as EMFILE are
// retried with back-off by http.Server itself.
func clientServer(h http.Handler) *http.Server {
	return &http.Server{Handler: cluster.BodyReadTimeout(h, 30*time.Second), ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
}

// limitConns bounds a client listener's open connections, each a goroutine
// or two: every watcher (--max-watchers) and 1024 more requests.
func (d *Daemon) limitConns(ln net.Listener) net.Listener {
	return cluster.LimitListener(ln, max(d.cfg.KV.MaxWatchers, 0)+1024)
}

// clientHandler routes /v2/keys straight to the KV (http.ServeMux would
// redirect keys with ".." instead of answering the etcd error) and the
// rest to the mux. The peer port serves it too (forwarded requests).
func (d *Daemon) clientHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if d.kvServer != nil && (req.URL.Path == kv.KeysPrefix || strings.HasPrefix(req.URL.Path, kv.KeysPrefix+"/")) {
			d.kvServer.ServeHTTP(w, req)
			return
		}
		d.mux.ServeHTTP(w, req)
	})
}

// listen starts the raft node (its peer listener) and serves the client
// URLs. A client listener that fails later is reported on d.errc.
func (d *Daemon) listen() error {
	f := &d.cfg.KV
	// One guard for every port: on the peer port it sees member
	// certificates and the roles followers forward (secure.go).
	h := d.guard(d.clientHandler())
	if d.node != nil {
		if err := d.node.Start(h); err != nil {
			return err
		}
	}
	var clientTLS *tls.Config
	for _, u := range f.ListenClientURLs {
		host, p, err := listenHostPort(u)
		if err != nil {
			return fmt.Errorf("--listen-client-urls: %w", err)
		}
		ln, err := net.Listen("tcp", host)
		if err != nil {
			return fmt.Errorf("listen for clients on %s: %w", host, err)
		}
		ln = d.limitConns(ln)
		if p.Scheme == "https" {
			if clientTLS == nil {
				if clientTLS, err = f.ClientTLS.ServerConfig(); err != nil {
					ln.Close()
					return fmt.Errorf("client TLS: %w", err)
				}
			}
			ln = tls.NewListener(ln, clientTLS)
		}
		// ReadHeaderTimeout also bounds the TLS handshake: a client that
		// dribbles its hello or headers (slowloris) is cut off.
		srv := clientServer(h)
		d.clients = append(d.clients, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.errc <- fmt.Errorf("client listener %s: %w", host, err)
			}
		}()
	}
	return nil
}

// serveFleetSocket serves h (the fleet API) on the unix socket sock until
// ctx ends, then removes the socket. Whoever can connect controls the
// cluster's units, so it is root's only, made as root's pithd socket is.
func (d *Daemon) serveFleetSocket(ctx context.Context, sock string, h http.Handler) error {
	ln, err := listenRootSocket(sock)
	if err != nil {
		return fmt.Errorf("--fleet-socket %s: %w", sock, err)
	}
	srv := clientServer(h)
	go srv.Serve(d.limitConns(ln))
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(sock)
	}()
	d.log.Info("fleet API on unix socket (root only, mode 0600)", "path", sock)
	return nil
}
