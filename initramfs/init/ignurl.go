package pithinit

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/configurl"
)

// pithdIgnitionURL is pithd's name of its ignition.config.url source
// (agent/datasource).
const pithdIgnitionURL = "ignition-url"

// CABundle, below the verified /usr, is the image's CA bundle (Debian's
// ca-certificates, kept with the /etc defaults): what https config URLs
// are checked against. The initramfs has none of its own, and ROOT's
// /etc is writable, so it is not trusted for this.
const CABundle = "share/pith/etc/ssl/certs/ca-certificates.crt"

// urlReader is the ignition.config.url source's Read for u: a data: URL
// is decoded; for http and https the Ethernet NICs come up
// (withNIC) for Ignition's fetch (package configurl: no answer or a 5xx
// retried within its wait, a console line a try; any other answer ends
// it). https needs the CA bundle of the /usr mounted at usr. Every
// failure, no network included, stops the boot: the operator named this
// config, and Ignition fails closed. An empty answer is no config, as
// Ignition ignores one.
func urlReader(printf func(string, ...any), u, usr string, wait time.Duration) func() ([]byte, string, error) {
	return func() ([]byte, string, error) {
		f := &configurl.Fetcher{Wait: wait, OnRetry: func(try int, err error, next, left time.Duration) {
			printf("Ignition: GET %s: try %d failed (%v); again in %v (%v left)", cloudconfig.RedactSource(u), try, err, next.Round(100*time.Millisecond), left.Round(time.Second))
		}}
		var (
			ud  []byte
			err error
		)
		switch configurl.Scheme(u) {
		case "data":
			ud, err = f.Fetch(context.Background(), u)
		case "http", "https":
			roots, rerr := caRoots(usr, configurl.Scheme(u))
			if rerr != nil {
				return nil, "", rerr
			}
			f.Client = configurl.NewClient(roots)
			ctx, cancel := context.WithTimeout(context.Background(), netLinkWait+netDHCPWait+wait+time.Minute)
			defer cancel()
			noNet := func(err error) error { return fmt.Errorf("no network for it: %w", err) }
			ud, _, err = withNIC(ctx, printf, "the config URL", noNet, func() ([]byte, string, error) {
				b, err := f.Fetch(ctx, u)
				return b, "", err
			})
		default:
			_, err = f.Fetch(context.Background(), u) // says which schemes Pith fetches
		}
		if err != nil {
			return nil, "", err
		}
		if cloudconfig.Detect(ud) == cloudconfig.FormatEmpty {
			printf("Ignition: %s %s is an empty config: nothing to apply (Ignition ignores one too)", configurl.Key, cloudconfig.RedactSource(u))
			return nil, "", nil
		}
		return ud, "", nil
	}
}

// caRoots returns the CA bundle below usr for an https URL (nil for
// http).
func caRoots(usr, scheme string) (*x509.CertPool, error) {
	if scheme != "https" {
		return nil, nil
	}
	p := filepath.Join(usr, CABundle)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("an https config URL needs a CA bundle, and this image's /usr has none (/usr/%s): use an http URL, or an image with ca-certificates", CABundle)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("the CA bundle /usr/%s holds no certificate", CABundle)
	}
	return pool, nil
}
