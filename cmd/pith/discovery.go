package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/discovery"
)

func init() {
	disc := &cobra.Command{Use: "discovery", Short: "Run an etcd-style discovery service and create cluster tokens"}

	var listen, advertise, certFile, keyFile string
	var newFrom []string
	opt := discovery.Options{}
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve discovery on this workstation (tokens kept in --state, expiring after --token-ttl)",
		Long: `Serve an etcd-style discovery service. A token (128 random bits) is the only
credential: a caller reads and registers only under the token it names, a
registration cannot be overwritten or deleted, tokens expire, and only
--new-from may create them (default: this machine). The README's
"Security" section has the threat model.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range newFrom {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return fmt.Errorf("--new-from %q: %w (want a network such as 10.0.0.0/8)", s, err)
				}
				opt.NewFrom = append(opt.NewFrom, p)
			}
			ln, scheme, err := discoveryListen(listen, certFile, keyFile)
			if err != nil {
				return err
			}
			if advertise == "" {
				advertise = scheme + "://" + ln.Addr().String()
			}
			d, err := discovery.Open(advertise, opt)
			if err != nil {
				ln.Close()
				return err
			}
			defer d.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go d.Run(ctx)
			out := cmd.OutOrStdout()
			if opt.StateFile != "" {
				fmt.Fprintf(out, "discovery: tokens kept in %s\n", opt.StateFile)
			}
			if scheme == "http" && !isLoopbackListen(ln.Addr()) {
				fmt.Fprintf(out, "discovery: warning: plain HTTP on %s: anyone on the path sees the tokens; give --cert-file/--key-file\n", ln.Addr())
			}
			fmt.Fprintf(out, "discovery: serving on %s; new token: curl '%s/new?size=3' or pith discovery new --server %s\n", ln.Addr(), advertise, advertise)
			return d.Serve(ctx, ln)
		},
	}
	serve.Flags().StringVar(&listen, "listen", "127.0.0.1:8087", "address to listen on")
	serve.Flags().StringVar(&advertise, "advertise", "", "base URL nodes reach this service at (default http(s)://<listen address>)")
	serve.Flags().StringVar(&opt.StateFile, "state", defaultDiscoveryState(), `file keeping tokens and registrations across restarts, 0600 ("" keeps them in memory only)`)
	serve.Flags().DurationVar(&opt.TokenTTL, "token-ttl", discovery.DefaultTokenTTL, "how long a token and its registrations live")
	serve.Flags().IntVar(&opt.MaxTokens, "max-tokens", 1024, "live tokens at most")
	serve.Flags().IntVar(&opt.MaxRegistrations, "max-registrations", 128, "registrations per token at most (and the largest --size)")
	serve.Flags().StringSliceVar(&newFrom, "new-from", []string{"127.0.0.0/8", "::1/128"}, "networks allowed to create tokens (GET /new)")
	serve.Flags().StringVar(&certFile, "cert-file", "", "serve HTTPS with this certificate (PEM)")
	serve.Flags().StringVar(&keyFile, "key-file", "", "the certificate's private key (PEM)")

	var server, caCert string
	var size int
	newCmd := &cobra.Command{
		Use:   "new",
		Short: "Create a discovery token for a cluster of --size members and print its URL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if size < 1 {
				return fmt.Errorf("--size %d: a cluster needs at least one member", size)
			}
			c := &http.Client{Timeout: 30 * time.Second}
			if caCert != "" {
				pem, err := os.ReadFile(caCert)
				if err != nil {
					return fmt.Errorf("--cacert: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return fmt.Errorf("--cacert %s: no PEM certificate in it", caCert)
				}
				c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
			}
			resp, err := c.Get(fmt.Sprintf("%s/new?size=%d", strings.TrimRight(server, "/"), size))
			if err != nil {
				return fmt.Errorf("discovery server %s: %w (is `pith discovery serve` running?)", server, err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("discovery server: %s", strings.TrimSpace(string(b)))
			}
			fmt.Fprint(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	newCmd.Flags().StringVar(&server, "server", "http://127.0.0.1:8087", "discovery service base URL")
	newCmd.Flags().IntVar(&size, "size", 3, "number of founding members (voters)")
	newCmd.Flags().StringVar(&caCert, "cacert", "", "CA certificate (PEM) to trust for an https --server, beside the system's")

	disc.AddCommand(serve, newCmd)
	rootCmd.AddCommand(disc)
}

// defaultDiscoveryState is $XDG_STATE_HOME/pith/discovery.json, else
// ~/.local/state/pith/discovery.json.
func defaultDiscoveryState() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "pith", "discovery.json")
}

// isLoopbackListen reports whether a is on a loopback address, where plain
// HTTP crosses no network.
func isLoopbackListen(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// discoveryListen listens on addr, with TLS when certFile and keyFile are
// given, and returns the listener and its URL scheme.
func discoveryListen(addr, certFile, keyFile string) (net.Listener, string, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, "", fmt.Errorf("--cert-file and --key-file go together")
	}
	var cert tls.Certificate
	if certFile != "" {
		var err error
		if cert, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil, "", fmt.Errorf("--cert-file/--key-file: %w", err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w (pick another --listen address)", addr, err)
	}
	if certFile == "" {
		return ln, "http", nil
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), "https", nil
}
