package apply

// Fetching an Ignition config's remote parts at first boot: the configs
// it merges or is replaced by, and file contents over http(s). Everything
// is fetched and its verification.hash checked before anything is
// written, so a wrong hash or an unreachable source applies nothing of
// the config (Ignition's fail-closed rule).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"
	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/pith-os/pith/cloudconfig"
)

// maxIgnitionDepth bounds merge/replace chains (a config that merges
// itself would otherwise never end).
const maxIgnitionDepth = 10

// ignFetcher fetches resources with one config's CAs, proxy and timeouts.
type ignFetcher struct {
	client *http.Client
	// roots is what client trusts: the system roots plus the config's CAs.
	roots *x509.CertPool
	// total bounds retries of one resource (ignition.timeouts.httpTotal;
	// default fetchTotal).
	total time.Duration
	log   *slog.Logger
}

// fetchTotal is how long a source that does not answer (the network may
// still be coming up at first boot) is retried without httpTotal.
const fetchTotal = 5 * time.Minute

// newIgnFetcher builds a fetcher with c's ignition.proxy and timeouts,
// trusting the system roots plus c's
// ignition.security.tls.certificateAuthorities. The CAs themselves are
// fetched, as in Ignition, with c's proxy and timeouts, trusting what
// parent trusts (the config that named c, or the one c is merged onto;
// the system roots when parent is nil).
func newIgnFetcher(ctx context.Context, c *cloudconfig.IgnitionConfig, parent *ignFetcher, log *slog.Logger) (*ignFetcher, error) {
	proxy, err := proxyFunc(c.Ignition.Proxy)
	if err != nil {
		return nil, err
	}
	build := func(roots *x509.CertPool) *ignFetcher {
		tr := &http.Transport{
			Proxy:           proxy,
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		}
		f := &ignFetcher{client: &http.Client{Transport: tr, CheckRedirect: checkRedirect}, roots: roots, total: fetchTotal, log: log}
		if t := c.Ignition.Timeouts.HTTPResponseHeaders; t != nil && *t > 0 {
			tr.ResponseHeaderTimeout = time.Duration(*t) * time.Second
		}
		if t := c.Ignition.Timeouts.HTTPTotal; t != nil && *t > 0 {
			f.total = time.Duration(*t) * time.Second
		}
		return f
	}
	roots := systemRoots()
	if parent != nil {
		roots = parent.roots
	}
	caFetcher := build(roots)
	pool := systemRoots()
	for i, ca := range c.Ignition.Security.TLS.CertificateAuthorities {
		data, err := caFetcher.fetch(ctx, ca)
		if err != nil {
			return nil, fmt.Errorf("ignition.security.tls.certificateAuthorities[%d]: %w", i, err)
		}
		if err := cloudconfig.CertPoolFromPEM(pool, data); err != nil {
			return nil, fmt.Errorf("ignition.security.tls.certificateAuthorities[%d]: %w", i, err)
		}
	}
	return build(pool), nil
}

func systemRoots() *x509.CertPool {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		return x509.NewCertPool()
	}
	return pool
}

// checkRedirect refuses a redirect from https to plain http: the source
// was written as https to be private and authenticated, and its
// httpHeaders (credentials, often) would follow it in clear. Otherwise it
// is net/http's default policy (at most 10 redirects).
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errPermanent{errors.New("stopped after 10 redirects")}
	}
	if prev := via[len(via)-1]; prev.URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errPermanent{fmt.Errorf("refusing the redirect from https to %s (%s): it would drop TLS and send the request's headers in clear", req.URL.Scheme, cloudconfig.RedactSource(req.URL.String()))}
	}
	return nil
}

// proxyFunc applies ignition.proxy: httpProxy for http sources,
// httpsProxy for https ones, except hosts in noProxy (a name matches
// itself and its subdomains; "*" matches every host).
func proxyFunc(p igntypes.Proxy) (func(*http.Request) (*url.URL, error), error) {
	parse := func(s string) (*url.URL, error) {
		if s == "" {
			return nil, nil
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("ignition.proxy: %q is not a proxy URL", s)
		}
		return u, nil
	}
	hp, err := parse(deref(p.HTTPProxy))
	if err != nil {
		return nil, err
	}
	hsp, err := parse(deref(p.HTTPSProxy))
	if err != nil {
		return nil, err
	}
	return func(r *http.Request) (*url.URL, error) {
		host := r.URL.Hostname()
		for _, n := range p.NoProxy {
			n := strings.TrimPrefix(string(n), ".")
			if n == "*" || host == n || strings.HasSuffix(host, "."+n) {
				return nil, nil
			}
		}
		if r.URL.Scheme == "https" {
			return hsp, nil
		}
		return hp, nil
	}, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// errPermanent marks a fetch error that a retry cannot fix.
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// fetch returns a resource's contents, decompressed and checked against
// its verification.hash. A resource without a source is empty. Logs and
// errors name the source redacted (cloudconfig.RedactSource): URLs carry
// credentials (user:password@, pre-signed tokens), and these messages go
// to the journal and the first-boot report.
func (f *ignFetcher) fetch(ctx context.Context, r igntypes.Resource) ([]byte, error) {
	if r.Source == nil {
		return nil, nil
	}
	src := *r.Source
	name := cloudconfig.RedactSource(src)
	switch cloudconfig.SourceScheme(src) {
	case "data":
		return cloudconfig.DecodeIgnitionResource(r)
	case "http", "https":
	default:
		return nil, fmt.Errorf("source %q: Pith fetches data:, http and https sources only", name)
	}
	if cloudconfig.SourceScheme(src) == "http" {
		f.log.Warn("fetching over plain HTTP", "source", name, "risk", plainHTTPRisk(r))
	}
	ctx, cancel := context.WithTimeout(ctx, f.total)
	defer cancel()
	wait := time.Second
	for {
		raw, err := f.get(ctx, src, r.HTTPHeaders)
		if err == nil {
			data, err := cloudconfig.DecodeIgnitionData(r, raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return data, nil
		}
		var perm errPermanent
		if errors.As(err, &perm) {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		f.log.Info("fetch failed; retrying", "source", name, "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w (gave up after %s)", name, err, f.total)
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// plainHTTPRisk says what plain HTTP risks for r: with a
// verification.hash a changed copy fails the config, so what remains is
// that anyone on the path reads it (and its httpHeaders).
func plainHTTPRisk(r igntypes.Resource) string {
	headers := ""
	if len(r.HTTPHeaders) > 0 {
		headers = " and its httpHeaders"
	}
	if r.Verification.Hash != nil {
		return "its verification.hash is checked, but anyone on the path can read it" + headers + "; use https"
	}
	return "anyone on the path can change it (and read it" + headers + "); use https or give verification.hash"
}

// get fetches src once. Its errors do not name src (fetch adds it,
// redacted); net/http's *url.Error, which quotes the URL in full, is
// unwrapped.
func (f *ignFetcher) get(ctx context.Context, src string, headers igntypes.HTTPHeaders) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, errPermanent{errors.New("not a valid URL")}
	}
	req.Header.Set("Accept-Encoding", "identity")
	for _, h := range headers {
		if h.Value != nil {
			req.Header.Set(h.Name, *h.Value)
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		var caErr x509.UnknownAuthorityError
		if errors.As(err, &caErr) {
			return nil, errPermanent{fmt.Errorf("%w (give the CA in ignition.security.tls.certificateAuthorities)", err)}
		}
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500:
		return nil, errors.New(resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, errPermanent{errors.New(resp.Status)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, cloudconfig.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > cloudconfig.MaxSize {
		return nil, errPermanent{fmt.Errorf("larger than %d MiB", cloudconfig.MaxSize>>20)}
	}
	return body, nil
}

// renderIgnition resolves ignition.config.replace and .merge as Ignition
// does: a replacing config takes the place of c (and is resolved in
// turn); merged configs are resolved and merged onto c in order, later
// ones winning. It returns the fetcher of the resulting config.
func (a *Applier) renderIgnition(ctx context.Context, c cloudconfig.IgnitionConfig, parent *ignFetcher, depth int) (cloudconfig.IgnitionConfig, *ignFetcher, error) {
	if depth > maxIgnitionDepth {
		return c, nil, fmt.Errorf("ignition.config: merge/replace nested more than %d deep", maxIgnitionDepth)
	}
	f, err := newIgnFetcher(ctx, &c, parent, a.log())
	if err != nil {
		return c, nil, err
	}
	if r := c.Ignition.Config.Replace; r.Source != nil {
		child, err := f.fetchConfig(ctx, r)
		if err != nil {
			return c, nil, fmt.Errorf("ignition.config.replace: %w", err)
		}
		a.log().Info("Ignition config replaced", "source", cloudconfig.RedactSource(*r.Source))
		return a.renderIgnition(ctx, child, f, depth+1)
	}
	merges := c.Ignition.Config.Merge
	c.Ignition.Config = igntypes.IgnitionConfig{}
	for i, r := range merges {
		child, err := f.fetchConfig(ctx, r)
		if err != nil {
			return c, nil, fmt.Errorf("ignition.config.merge[%d]: %w", i, err)
		}
		if child, _, err = a.renderIgnition(ctx, child, f, depth+1); err != nil {
			return c, nil, err
		}
		a.log().Info("Ignition config merged", "source", cloudconfig.RedactSource(*r.Source))
		c = v3_5.Merge(c, child)
		// The merged config's CAs are fetched trusting what c trusted so
		// far (its own CAs included), as Ignition's fetcher accumulates.
		if f, err = newIgnFetcher(ctx, &c, f, a.log()); err != nil {
			return c, nil, err
		}
	}
	return c, f, nil
}

// fetchConfig fetches a referenced config and validates it as user-data
// is validated: an invalid one fails the whole config.
func (f *ignFetcher) fetchConfig(ctx context.Context, r igntypes.Resource) (cloudconfig.IgnitionConfig, error) {
	data, err := f.fetch(ctx, r)
	if err != nil {
		return cloudconfig.IgnitionConfig{}, err
	}
	name := cloudconfig.RedactSource(*r.Source)
	c, rep := cloudconfig.ParseIgnition(data)
	if rep.HasErrors() || c == nil {
		return cloudconfig.IgnitionConfig{}, fmt.Errorf("%s is not a valid config:\n%s", name, rep.Format(name))
	}
	// The initramfs partitions and formats from the user-data alone; a
	// fetched config's storage would be skipped while its files land
	// where the missing filesystems should be.
	if s := c.Storage; len(s.Disks)+len(s.Filesystems)+len(s.Raid)+len(s.Luks) > 0 {
		return cloudconfig.IgnitionConfig{}, fmt.Errorf("%s has storage.disks/filesystems/raid/luks: Pith applies storage only from the user-data's own config (in the initramfs), not from merged or replacing configs; move them there", name)
	}
	// The same for kernelArguments: the initramfs changed the kernel line
	// from the user-data alone, before this config was fetched.
	if k := c.KernelArguments; len(k.ShouldExist)+len(k.ShouldNotExist) > 0 {
		return cloudconfig.IgnitionConfig{}, fmt.Errorf("%s has kernelArguments: Pith applies them only from the user-data's own config (in the initramfs), not from merged or replacing configs; move them there", name)
	}
	return *c, nil
}
