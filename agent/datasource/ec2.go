package datasource

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultEC2Wait is how long the EC2 source keeps trying an unreachable
// metadata service when the kernel line says the machine is on EC2
// (pith.platform=ec2). First boot runs before DHCP has finished, and on EC2
// the metadata service is the only source of user-data and SSH keys:
// giving up after the usual few seconds would boot a node nobody can log
// in to. On other platforms the service is one guess among several and is
// not waited for.
const DefaultEC2Wait = 2 * time.Minute

// ec2RetryPause is the pause between tries while waiting for the network.
const ec2RetryPause = time.Second

// EC2 reads the EC2 instance metadata service: an IMDSv2 session token
// first (PUT /latest/api/token), then IMDSv1 if the service predates
// tokens. Metadata comes from /latest/meta-data/, user-data from
// /latest/user-data (404 there means none was given).
type EC2 struct {
	cfg Config
	// Wait bounds the retries while the service is unreachable. Zero means
	// DefaultEC2Wait on an ec2/aws platform and no waiting elsewhere.
	Wait time.Duration
}

// Name implements Source.
func (e *EC2) Name() string { return "ec2" }

// NewEC2 returns the EC2 source for cfg.
func NewEC2(cfg Config) *EC2 { return &EC2{cfg: cfg.withDefaults()} }

// isEC2Platform reports whether the kernel line names EC2.
func isEC2Platform(p string) bool {
	switch strings.ToLower(p) {
	case "ec2", "aws":
		return true
	}
	return false
}

// token asks for an IMDSv2 session token, retrying for up to wait while no
// service answers. It returns "" (and no error) for a service without
// IMDSv2, and an error wrapping ErrNotFound when nothing answered.
func (e *EC2) token(ctx context.Context, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		status, tok, err := do(ctx, e.cfg, http.MethodPut, e.cfg.MetadataURL+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
		switch {
		case errors.Is(err, errUnreachable):
			if !time.Now().Before(deadline) {
				if wait > 0 {
					return "", fmt.Errorf("%w: no EC2 metadata service answered at %s within %v (is IMDS disabled for this instance?): %v", ErrNotFound, e.cfg.MetadataURL, wait, err)
				}
				return "", ErrNotFound
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(ec2RetryPause):
			}
			continue
		case err != nil:
			return "", err
		case status == http.StatusOK && len(tok) > 0:
			return strings.TrimSpace(string(tok)), nil
		}
		// No IMDSv2 (404/405/403 from an old or non-EC2 service): try v1.
		return "", nil
	}
}

// Fetch implements Source.
func (e *EC2) Fetch(ctx context.Context) (*Result, error) {
	base := e.cfg.MetadataURL
	wait := e.Wait
	if wait == 0 && isEC2Platform(e.cfg.Platform()) {
		wait = DefaultEC2Wait
	}
	hdr := map[string]string{}
	tok, err := e.token(ctx, wait)
	if err != nil {
		return nil, err
	}
	if tok != "" {
		hdr["X-aws-ec2-metadata-token"] = tok
	}
	get := func(p string) (int, []byte, error) { return do(ctx, e.cfg, http.MethodGet, base+p, hdr) }

	status, id, err := get("/latest/meta-data/instance-id")
	if err != nil {
		return nil, err
	}
	switch {
	case status == http.StatusUnauthorized:
		return nil, errors.New("the metadata service requires an IMDSv2 token but issued none (is the hop limit too low?)")
	case status != http.StatusOK:
		return nil, ErrNotFound // a metadata service, but not EC2's
	}
	r := &Result{Metadata: Metadata{InstanceID: strings.TrimSpace(string(id))}}
	if r.UserData, err = userData(get, "/latest/user-data"); err != nil {
		return nil, err
	}
	text := func(p string) (string, error) {
		status, b, err := get("/latest/meta-data/" + p)
		if err != nil {
			return "", err
		}
		if status == http.StatusNotFound {
			return "", nil
		}
		if status != http.StatusOK {
			return "", fmt.Errorf("GET /latest/meta-data/%s: HTTP %d", p, status)
		}
		return strings.TrimSpace(string(b)), nil
	}
	md := &r.Metadata
	for _, f := range []struct {
		path string
		set  func(string)
	}{
		{"local-hostname", func(s string) { md.Hostname = s }},
		{"local-ipv4", func(s string) { md.PrivateIPv4 = net.ParseIP(s) }},
		{"public-ipv4", func(s string) { md.PublicIPv4 = net.ParseIP(s) }},
		{"ipv6", func(s string) { md.PrivateIPv6 = net.ParseIP(s) }},
	} {
		v, err := text(f.path)
		if err != nil {
			return nil, err
		}
		f.set(v)
	}
	keys, err := text("public-keys/")
	if err != nil {
		return nil, err
	}
	// EC2 lists "0=name" per line; Amazon's metadata emulator lists "0/".
	// Each key is at public-keys/N/openssh-key.
	for _, line := range strings.Split(keys, "\n") {
		idx, _, _ := strings.Cut(strings.TrimSpace(line), "=")
		idx = strings.TrimSuffix(idx, "/")
		if _, err := strconv.ParseUint(idx, 10, 16); err != nil {
			continue
		}
		k, err := text("public-keys/" + idx + "/openssh-key")
		if err != nil {
			return nil, err
		}
		if k != "" {
			md.SSHPublicKeys = append(md.SSHPublicKeys, k)
		}
	}
	return r, nil
}
