package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/agent/kv"
)

func init() {
	disc := &cobra.Command{Use: "discovery", Short: "Run an etcd-style discovery service and create cluster tokens"}

	var listen, advertise, statePath string
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve discovery on this workstation (the etcd v2 keys API; tokens kept in --state)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w (pick another --listen address)", listen, err)
			}
			if advertise == "" {
				advertise = "http://" + ln.Addr().String()
			}
			d, err := kv.OpenDiscovery(advertise, statePath)
			if err != nil {
				ln.Close()
				return err
			}
			defer d.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go d.Run(ctx)
			srv := &http.Server{Handler: d, ReadHeaderTimeout: 30 * time.Second}
			go func() { <-ctx.Done(); srv.Close() }()
			if statePath != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "discovery: tokens kept in %s\n", statePath)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "discovery: serving on %s; new token: curl '%s/new?size=3' or pith discovery new --server %s\n", ln.Addr(), advertise, advertise)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	serve.Flags().StringVar(&listen, "listen", "127.0.0.1:8087", "address to listen on")
	serve.Flags().StringVar(&advertise, "advertise", "", "base URL nodes reach this service at (default http://<listen address>)")
	serve.Flags().StringVar(&statePath, "state", defaultDiscoveryState(), `file keeping tokens and registrations across restarts ("" keeps them in memory only)`)

	var server string
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
