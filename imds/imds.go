// Package imds speaks EC2's instance metadata service the way pithd reads
// it: an IMDSv2 session token first (PUT /latest/api/token), IMDSv1 when
// the service predates tokens, the instance id as proof that it is EC2's,
// then user-data. pithd's EC2 datasource and pith-init (the first boot's
// storage and kernel arguments on EC2) share it, so both take the same
// user-data by the same rules.
package imds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// DefaultURL is EC2's link-local metadata service.
const DefaultURL = "http://169.254.169.254"

var (
	// ErrUnreachable wraps a Do error where no HTTP server answered.
	ErrUnreachable = errors.New("metadata service unreachable")
	// ErrNoService means no service answered the token request within
	// Client.Wait: the service is absent (or IMDS is disabled).
	ErrNoService = errors.New("no metadata service answered")
	// ErrNotEC2 means a metadata service answered, but not EC2's (no
	// instance id).
	ErrNotEC2 = errors.New("a metadata service, but not EC2's")
)

// Do sends one request and returns the answer's status and body; an error
// wrapping ErrUnreachable when no server answered.
type Do func(ctx context.Context, method, url string, hdr map[string]string) (int, []byte, error)

// HTTP is a Do over an HTTP client: each request bounded by Timeout,
// connection failures and 5xx answers tried Attempts times (the network
// may still be coming up), bodies over Max bytes refused.
type HTTP struct {
	Client   *http.Client
	Timeout  time.Duration
	Attempts int
	Max      int64
}

// Do implements Do.
func (h HTTP) Do(ctx context.Context, method, u string, hdr map[string]string) (int, []byte, error) {
	var lastErr error
	for attempt := 0; attempt < h.Attempts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return 0, nil, ctx.Err()
			case <-time.After(time.Duration(attempt) * 300 * time.Millisecond):
			}
		}
		status, body, err := h.once(ctx, method, u, hdr)
		if err == nil && status < 500 {
			return status, body, nil
		}
		if err == nil {
			lastErr = fmt.Errorf("%s %s: HTTP %d", method, u, status)
			continue
		}
		lastErr = err
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(lastErr, &oe) || (errors.As(lastErr, &ne) && ne.Timeout()) {
		return 0, nil, fmt.Errorf("%w: %v", ErrUnreachable, lastErr)
	}
	return 0, nil, lastErr
}

func (h HTTP) once(ctx context.Context, method, u string, hdr map[string]string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, h.Max+1))
	if err != nil {
		return 0, nil, err
	}
	if int64(len(b)) > h.Max {
		return 0, nil, fmt.Errorf("%s is larger than %d MiB", u, h.Max>>20)
	}
	return resp.StatusCode, b, nil
}

// Client reads the service at URL.
type Client struct {
	URL string // base, e.g. DefaultURL
	Do  Do
	// Wait bounds the token request's retries while nothing answers
	// (zero: one try), Pause is the pause between them, and OnWait, when
	// set, is told of each pause (a console line) with why and how much
	// of Wait is left.
	Wait, Pause time.Duration
	OnWait      func(err error, left time.Duration)
}

// Session is an open conversation with EC2's service: its token header
// (none for IMDSv1) and the instance id.
type Session struct {
	c          *Client
	hdr        map[string]string
	InstanceID string
}

// Open asks for a session token, retrying for up to Wait while nothing
// answers (ErrNoService after), then reads the instance id (ErrNotEC2
// when the service has none).
func (c *Client) Open(ctx context.Context) (*Session, error) {
	tok, err := c.token(ctx)
	if err != nil {
		return nil, err
	}
	s := &Session{c: c, hdr: map[string]string{}}
	if tok != "" {
		s.hdr["X-aws-ec2-metadata-token"] = tok
	}
	status, id, err := s.Get(ctx, "/latest/meta-data/instance-id")
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusUnauthorized:
		return nil, errors.New("the metadata service requires an IMDSv2 token but issued none (is the hop limit too low?)")
	case status != http.StatusOK:
		return nil, ErrNotEC2
	}
	s.InstanceID = strings.TrimSpace(string(id))
	return s, nil
}

// token returns "" (and no error) for a service without IMDSv2.
func (c *Client) token(ctx context.Context) (string, error) {
	deadline := time.Now().Add(c.Wait)
	for {
		status, tok, err := c.Do(ctx, http.MethodPut, c.URL+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
		switch {
		case errors.Is(err, ErrUnreachable):
			left := time.Until(deadline)
			if left <= 0 {
				return "", fmt.Errorf("%w at %s within %v: %v", ErrNoService, c.URL, c.Wait, err)
			}
			if c.OnWait != nil {
				c.OnWait(err, left)
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(c.Pause):
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

// Get reads path (from /latest/...) with the session's token.
func (s *Session) Get(ctx context.Context, path string) (int, []byte, error) {
	return s.c.Do(ctx, http.MethodGet, s.c.URL+path, s.hdr)
}

// UserData reads /latest/user-data: nil when the instance was given none
// (404).
func (s *Session) UserData(ctx context.Context) ([]byte, error) {
	status, ud, err := s.Get(ctx, "/latest/user-data")
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusOK:
		return ud, nil
	case status == http.StatusNotFound:
		return nil, nil
	}
	return nil, fmt.Errorf("GET /latest/user-data: HTTP %d", status)
}
