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

	ec2imds "github.com/pith-os/pith/imds"
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

// EC2 reads the EC2 instance metadata service through package imds
// (shared with pith-init, which reads the same user-data on first boot):
// an IMDSv2 session token first (PUT /latest/api/token), then IMDSv1 if
// the service predates tokens. Metadata comes from /latest/meta-data/,
// user-data from /latest/user-data (404 there means none was given).
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

// Fetch implements Source.
func (e *EC2) Fetch(ctx context.Context) (*Result, error) {
	wait := e.Wait
	if wait == 0 && isEC2Platform(e.cfg.Platform()) {
		wait = DefaultEC2Wait
	}
	c := &ec2imds.Client{URL: e.cfg.MetadataURL, Wait: wait, Pause: ec2RetryPause,
		Do: func(ctx context.Context, method, u string, hdr map[string]string) (int, []byte, error) {
			return do(ctx, e.cfg, method, u, hdr)
		}}
	s, err := c.Open(ctx)
	switch {
	case errors.Is(err, ec2imds.ErrNoService) && wait > 0:
		return nil, fmt.Errorf("%w: %v (is IMDS disabled for this instance?)", ErrNotFound, err)
	case errors.Is(err, ec2imds.ErrNoService), errors.Is(err, ec2imds.ErrNotEC2):
		return nil, ErrNotFound
	case err != nil:
		return nil, err
	}
	r := &Result{Metadata: Metadata{InstanceID: s.InstanceID}}
	if r.UserData, err = s.UserData(ctx); err != nil {
		return nil, err
	}
	get := s.Get
	text := func(p string) (string, error) {
		status, b, err := get(ctx, "/latest/meta-data/"+p)
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
