// Package configurl fetches the config that ignition.config.url names on
// the kernel line, as Ignition's fetch does: pith-init (first boot's
// storage and kernel arguments, in the initramfs) and pithd's datasource
// share it, so both take the same bytes by the same rules.
//
// Ignition (internal/resource, internal/exec) retries a GET that finds
// no server, or answers 5xx, with a doubling backoff (capped at 5 s) for
// at most its fetch timeout (2 minutes by default); any other answer
// than 200 or 204 ends the fetch at once (404 included), and so does a
// data: URL that does not decode. Here each failed try is reported
// (OnRetry: one console line a try).
package configurl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/pith-os/pith/cloudconfig"
)

// Key is Ignition's kernel argument.
const Key = "ignition.config.url"

// Ignition's bounds: its -fetch-timeout default, and its backoff.
const (
	DefaultWait  = 2 * time.Minute
	firstBackoff = 200 * time.Millisecond
	maxBackoff   = 5 * time.Second
	// headerWait is Ignition's httpResponseHeaders default.
	headerWait = 10 * time.Second
)

// Fetcher fetches one config URL.
type Fetcher struct {
	// Client does the GETs (nil: NewClient(nil)).
	Client *http.Client
	// Wait bounds the retries of a server that does not answer (0:
	// DefaultWait).
	Wait time.Duration
	// OnRetry, when set, is told of each failed try that is retried.
	OnRetry func(try int, err error, next, left time.Duration)
}

// NewClient returns Ignition's client: no proxy from the environment (the
// initramfs has none; pithd's config URL is the operator's own), a 10 s
// bound for the answer's headers, and roots for https (nil: the
// system's).
func NewClient(roots *x509.CertPool) *http.Client {
	tr := &http.Transport{Proxy: nil, ResponseHeaderTimeout: headerWait,
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	return &http.Client{Transport: tr}
}

// Fetch returns what u names: the body of a 200 or 204 (empty: no config,
// which Ignition ignores), or a data: URL's bytes. A scheme Pith does not
// fetch, an answer other than those, a body over cloudconfig.MaxSize and
// no answer within the wait are errors. Errors name u redacted
// (cloudconfig.RedactSource): a URL may carry credentials.
func (f *Fetcher) Fetch(ctx context.Context, u string) ([]byte, error) {
	name := cloudconfig.RedactSource(u)
	switch Scheme(u) {
	case "data":
		b, err := cloudconfig.DecodeIgnitionResource(igntypes.Resource{Source: &u})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return b, nil
	case "http", "https":
	default:
		return nil, fmt.Errorf("%s %q: Pith fetches http, https and data: config URLs only", Key, name)
	}
	if pu, err := url.Parse(u); err != nil || pu.Host == "" {
		return nil, fmt.Errorf("%s %q is not a URL", Key, name)
	}
	wait := f.Wait
	if wait <= 0 {
		wait = DefaultWait
	}
	client := f.Client
	if client == nil {
		client = NewClient(nil)
	}
	deadline := time.Now().Add(wait)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	backoff := firstBackoff
	var last error
	for try := 1; ; try++ {
		body, err := get(ctx, client, u)
		if last != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// The wait ran out during this try: what the server did is
			// what the tries before it met, not our own deadline.
			err = last
		}
		last = err
		var perm permanent
		if err == nil || errors.As(err, &perm) {
			if err != nil {
				return nil, fmt.Errorf("GET %s: %w", name, err)
			}
			return body, nil
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return nil, fmt.Errorf("GET %s: no answer within %v (%d tries): %w", name, wait, try, err)
		}
		next := min(backoff, left)
		if f.OnRetry != nil {
			f.OnRetry(try, err, next, left)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("GET %s: no answer within %v (%d tries): %w", name, wait, try, err)
		case <-time.After(next):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// Scheme is u's scheme, lower case ("data" for a data: URL).
func Scheme(u string) string { return cloudconfig.SourceScheme(u) }

// permanent is an answer a retry cannot change.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// get is one try. Its errors do not name u (net/http's *url.Error, which
// quotes it in full, is unwrapped).
func get(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, permanent{errors.New("not a valid URL")}
	}
	// As Ignition asks: the config as it is, of any version it reads.
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("Accept", "application/vnd.coreos.ignition+json;version=3.5.0, */*;q=0.1")
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		if errors.As(err, new(*tls.CertificateVerificationError)) {
			return nil, permanent{err} // a retry meets the same certificate
		}
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500:
		return nil, errors.New(resp.Status)
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent:
		return nil, permanent{errors.New(resp.Status)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, cloudconfig.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > cloudconfig.MaxSize {
		return nil, permanent{fmt.Errorf("larger than %d MiB", cloudconfig.MaxSize>>20)}
	}
	return body, nil
}
