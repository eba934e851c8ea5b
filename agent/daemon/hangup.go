package daemon

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// handleHangup keeps SIGHUP (an operator's "reload" after renewing
// certificates) from killing pithd. There is nothing to do on it: every
// TLS listener and dialer rereads its certificate, key and CA when the
// files change (pki.Reloader, looked at on handshakes at most once a
// second), so the renewed pair serves the next connection either way.
func (d *Daemon) handleHangup(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.log.Info("SIGHUP: certificate files are reread on the next TLS handshake (they are watched anyway)")
			}
		}
	}()
}
