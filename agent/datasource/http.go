package datasource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/configurl"
	ec2imds "github.com/pith-os/pith/imds"
)

// errUnreachable means no HTTP server answered: the service is absent.
var errUnreachable = ec2imds.ErrUnreachable

// do sends one request with the configured timeout, retrying connection
// failures and 5xx answers a few times (the network may still be coming
// up): package imds's HTTP, which pith-init's EC2 source uses too. It
// returns the status and body of the last answer.
func do(ctx context.Context, cfg Config, method, u string, hdr map[string]string) (int, []byte, error) {
	return ec2imds.HTTP{Client: cfg.Client, Timeout: cfg.RequestTimeout, Attempts: cfg.Attempts, Max: cloudconfig.MaxSize}.Do(ctx, method, u, hdr)
}

// DigitalOcean reads DigitalOcean's metadata service: /metadata/v1.json
// for the droplet's addresses and keys, /metadata/v1/user-data for
// user-data.
type DigitalOcean struct{ cfg Config }

// NewDigitalOcean returns the DigitalOcean source for cfg.
func NewDigitalOcean(cfg Config) *DigitalOcean { return &DigitalOcean{cfg: cfg.withDefaults()} }

// Name implements Source.
func (d *DigitalOcean) Name() string { return "digitalocean" }

// Fetch implements Source.
func (d *DigitalOcean) Fetch(ctx context.Context) (*Result, error) {
	base := d.cfg.MetadataURL
	status, body, err := do(ctx, d.cfg, http.MethodGet, base+"/metadata/v1.json", nil)
	switch {
	case errors.Is(err, errUnreachable):
		return nil, ErrNotFound
	case err != nil:
		return nil, err
	case status != http.StatusOK:
		return nil, ErrNotFound
	}
	var md struct {
		DropletID  json.Number `json:"droplet_id"`
		Hostname   string      `json:"hostname"`
		PublicKeys []string    `json:"public_keys"`
		Interfaces map[string][]struct {
			IPv4 *struct {
				IP string `json:"ip_address"`
			} `json:"ipv4"`
			IPv6 *struct {
				IP string `json:"ip_address"`
			} `json:"ipv6"`
		} `json:"interfaces"`
	}
	if err := json.Unmarshal(body, &md); err != nil || md.DropletID == "" {
		return nil, ErrNotFound // JSON, but not DigitalOcean's
	}
	r := &Result{Metadata: Metadata{InstanceID: md.DropletID.String(), Hostname: md.Hostname, SSHPublicKeys: md.PublicKeys}}
	pick := func(kind string) (v4, v6 net.IP) {
		for _, i := range md.Interfaces[kind] {
			if i.IPv4 != nil && v4 == nil {
				v4 = net.ParseIP(i.IPv4.IP)
			}
			if i.IPv6 != nil && v6 == nil {
				v6 = net.ParseIP(i.IPv6.IP)
			}
		}
		return v4, v6
	}
	r.Metadata.PublicIPv4, r.Metadata.PublicIPv6 = pick("public")
	r.Metadata.PrivateIPv4, r.Metadata.PrivateIPv6 = pick("private")
	get := func(p string) (int, []byte, error) { return do(ctx, d.cfg, http.MethodGet, base+p, nil) }
	if r.UserData, err = userData(get, "/metadata/v1/user-data"); err != nil {
		return nil, err
	}
	return r, nil
}

// userData reads a metadata service's user-data path: 200 is the data,
// 404 means the instance was given none.
func userData(get func(string) (int, []byte, error), path string) ([]byte, error) {
	status, ud, err := get(path)
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusOK:
		return ud, nil
	case status == http.StatusNotFound:
		return nil, nil
	}
	return nil, fmt.Errorf("GET %s: HTTP %d", path, status)
}

// URL fetches user-data from the URL named on the kernel line. The
// operator asked for it, so any failure is an error. An Ignition URL
// (ignition.config.url) is fetched as Ignition fetches it (package
// configurl, shared with pith-init: http, https and data:, retried within
// Config.IgnitionURLWait), and must hold an Ignition config: its errors
// are *IgnitionError.
type URL struct {
	URL      string
	Ignition bool
	cfg      Config
}

// NewURL returns the kernel-line URL source (pith.config.url).
func NewURL(u string, cfg Config) *URL { return &URL{URL: u, cfg: cfg.withDefaults()} }

// Name implements Source.
func (u *URL) Name() string {
	if u.Ignition {
		return IgnitionURLSource
	}
	return "kernel-url"
}

// IgnitionURLSource is the name of the ignition.config.url source (and
// of pith-init's, in node.IgnitionSourceMarker).
const IgnitionURLSource = "ignition-url"

// IgnitionError is the failure of a source that names an Ignition config
// (ignition.config.url): it could not be fetched, or is not an Ignition
// config. First boot stops on it, as Ignition's does.
type IgnitionError struct {
	Source string
	Err    error
}

func (e *IgnitionError) Error() string { return e.Err.Error() }
func (e *IgnitionError) Unwrap() error { return e.Err }

// Fetch implements Source.
func (u *URL) Fetch(ctx context.Context) (*Result, error) {
	if u.Ignition {
		return u.fetchIgnition(ctx)
	}
	pu, err := url.Parse(u.URL)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("kernel line URL %q is not an http(s) URL", u.URL)
	}
	status, body, err := do(ctx, u.cfg, http.MethodGet, u.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u.URL, err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: HTTP %d", u.URL, status)
	}
	return &Result{UserData: body}, nil
}

// fetchIgnition fetches an ignition.config.url. Empty is no config, as
// Ignition ignores one.
func (u *URL) fetchIgnition(ctx context.Context) (*Result, error) {
	f := &configurl.Fetcher{Client: u.cfg.Client, Wait: u.cfg.IgnitionURLWait}
	body, err := f.Fetch(ctx, u.URL)
	if err != nil {
		return nil, &IgnitionError{Source: u.Name(), Err: err}
	}
	data, err := cloudconfig.Decompress(body)
	if err == nil {
		if f := cloudconfig.Detect(data); f != cloudconfig.FormatIgnition && f != cloudconfig.FormatEmpty {
			err = fmt.Errorf("%s %s is not an Ignition config (it reads as %s): %s names an Ignition config, as in Ignition; a cloud-config goes in pith.config.url", configurl.Key, cloudconfig.RedactSource(u.URL), f, configurl.Key)
		}
	}
	if err != nil {
		return nil, &IgnitionError{Source: u.Name(), Err: err}
	}
	return &Result{UserData: body, Note: configurl.Key + " " + cloudconfig.RedactSource(u.URL)}, nil
}
