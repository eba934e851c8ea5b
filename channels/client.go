package channels

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/node"
)

// maxManifestBytes bounds what the client reads for a manifest or signature:
// a hostile server must not make the node buffer gigabytes.
const maxManifestBytes = 1 << 20

// Client fetches releases from a channel server.
type Client struct {
	// Base is the server URL, e.g. http://10.0.2.2:8080/ (a path prefix is
	// kept: payload and channel paths are joined below it).
	Base *url.URL
	// HTTP defaults to a client with connect and header timeouts but no
	// whole-request timeout (payloads are large).
	HTTP *http.Client
	// Policy decides which manifests are acceptable; its Channel is the
	// channel fetched when Manifest is called with an empty name.
	Policy Policy
	// Progress, when set, is called as payload bytes arrive (at most every
	// ProgressEvery, and once at the end).
	Progress      func(Progress)
	ProgressEvery time.Duration
	// MaxAttempts bounds consecutive attempts that make no progress
	// (default 5); an attempt that receives bytes resets the count.
	MaxAttempts int
	// Backoff is the pause before retry n (1-based); default 1s, 2s, 4s, .. 30s.
	Backoff func(n int) time.Duration
	// Gate, when set, sees each verified channel manifest before Manifest
	// returns it and may hold the node back (an error wrapping ErrNotNewer)
	// or pick an earlier signed release: the phased rollout (see
	// RolloutDoc.Decide).
	Gate func(context.Context, *Manifest) (*Manifest, error)
}

// Progress is a download's state (package node's, shared with the
// update agent's status and pithctl).
type Progress = node.Progress

// NewClient returns a client for the server at base.
func NewClient(base string, pol Policy) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("update server %q: %v", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("update server %q: want http://HOST[:PORT]/ or https://HOST[:PORT]/", base)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return &Client{Base: u, Policy: pol}, nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTPClient
}

var defaultHTTPClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	TLSHandshakeTimeout:   15 * time.Second,
	ResponseHeaderTimeout: 30 * time.Second,
	IdleConnTimeout:       90 * time.Second,
	MaxIdleConnsPerHost:   2,
}}

func (c *Client) url(rel string) string {
	return c.Base.ResolveReference(&url.URL{Path: rel}).String()
}

// Manifest fetches the channel's manifest and signature and verifies them
// against the client's Policy (channel: the argument, or Policy.Channel).
// A manifest and signature caught mid-update on the server (they name
// different manifests) are fetched again, up to three times, before the
// signature error is reported.
func (c *Client) Manifest(ctx context.Context, channel string) (*Manifest, error) {
	if channel == "" {
		channel = c.Policy.Channel
	}
	if !ValidChannelName(channel) {
		return nil, fmt.Errorf("channel %q: use lowercase letters, digits, '.', '_' or '-'", channel)
	}
	pol := c.Policy
	pol.Channel = channel
	var lastErr error
	for try := 0; try < 3; try++ {
		body, err := c.get(ctx, "channels/"+channel+".json")
		if err != nil {
			return nil, err
		}
		sig, err := c.get(ctx, "channels/"+channel+".json.sig")
		if err != nil {
			return nil, err
		}
		m, err := Verify(body, sig, pol)
		if err == nil && c.Gate != nil {
			return c.Gate(ctx, m)
		}
		if err == nil {
			return m, nil
		}
		lastErr = err
		if !errors.Is(err, ErrBadSignature) || !staleSignature(body, sig) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("channel %s at %s: %w", channel, c.Base.Redacted(), lastErr)
}

// staleSignature reports whether the signature file names a manifest other
// than body: the pair was read while the server was replacing it.
func staleSignature(body, sig []byte) bool {
	var sf SignatureFile
	if json.Unmarshal(sig, &sf) != nil {
		return false
	}
	sum := sha256.Sum256(body)
	return sf.ManifestSHA256 != "" && sf.ManifestSHA256 != hex.EncodeToString(sum[:])
}

func (c *Client) get(ctx context.Context, rel string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(rel), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", rel, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: server says %s", req.URL.Redacted(), resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", rel, err)
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("fetch %s: larger than %d bytes; not a manifest", rel, maxManifestBytes)
	}
	return b, nil
}

// Download fetches payload p into dir and returns the path of the complete,
// verified, compressed file (named by its SHA-256, so releases never mix).
// Bytes go to "<sha256>.part" first; an interrupted download, in this run or
// an earlier one, resumes from what is on disk with a Range request. The
// size is checked as bytes arrive and the hash at the end; a mismatch
// deletes the partial file and returns ErrSize or ErrHash.
func (c *Client) Download(ctx context.Context, p Payload, dir string) (string, error) {
	if err := validPayloadPath(p.Path); err != nil {
		return "", err
	}
	final := filepath.Join(dir, p.SHA256)
	if err := VerifyFile(final, p); err == nil {
		c.report(Progress{Payload: p.Name, Done: p.Size, Total: p.Size, Resumed: p.Size, Final: true})
		return final, nil
	}
	part := final + ".part"
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()

	// Hash what an earlier run left, so the final check covers every byte.
	h := sha256.New()
	have, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	if have > p.Size {
		if err := f.Truncate(0); err != nil {
			return "", err
		}
		h.Reset()
		have = 0
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return "", err
	}
	dl := &download{c: c, p: p, f: f, h: h, have: have, resumed: have, start: time.Now()}
	maxAttempts := c.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = 5
	}
	failures := 0
	for dl.have < p.Size {
		before := dl.have
		err := dl.attempt(ctx)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if errors.Is(err, ErrSize) || errors.Is(err, errFatal) {
			os.Remove(part)
			return "", err
		}
		if dl.have > before {
			failures = 0
		}
		failures++
		if failures >= maxAttempts {
			return "", fmt.Errorf("download %s: giving up after %d attempts without progress (%d of %d bytes kept for the next try): %w", p.Name, failures, dl.have, p.Size, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(c.backoff(failures)):
		}
	}
	c.report(dl.progress(true))
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		f.Close()
		os.Remove(part)
		return "", fmt.Errorf("%w: %s downloaded with sha256 %s, the manifest says %s (partial file deleted)", ErrHash, p.Name, got, p.SHA256)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	// Durable before it is reported: a cut must not lose the name of a
	// payload the agent goes on to write to a slot.
	if err := atomicfile.Rename(part, final); err != nil {
		return "", err
	}
	return final, nil
}

var errFatal = errors.New("download refused")

func (c *Client) backoff(n int) time.Duration {
	if c.Backoff != nil {
		return c.Backoff(n)
	}
	d := time.Second << (n - 1)
	if d > 30*time.Second || d <= 0 {
		d = 30 * time.Second
	}
	return d
}

func (c *Client) report(p Progress) {
	if c.Progress != nil {
		c.Progress(p)
	}
}

type download struct {
	c          *Client
	p          Payload
	f          *os.File
	h          hash.Hash
	have       int64
	resumed    int64
	etag       string
	start      time.Time
	lastReport time.Time
}

func (d *download) progress(final bool) Progress {
	secs := time.Since(d.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(d.have-d.resumed) / secs
	}
	return Progress{Payload: d.p.Name, Done: d.have, Total: d.p.Size, BytesPerSec: rate, Resumed: d.resumed, Final: final}
}

// attempt makes one request for the missing bytes and appends what arrives.
func (d *download) attempt(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.c.url(d.p.Path), nil)
	if err != nil {
		return err
	}
	if d.have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(d.have, 10)+"-")
		if d.etag != "" {
			// If the file changed since we saw it, the server sends it
			// whole (200) and we start over instead of splicing two files.
			req.Header.Set("If-Range", d.etag)
		}
	}
	resp, err := d.c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if d.have > 0 { // no range support, or the file changed: restart
			if err := d.restart(); err != nil {
				return err
			}
		}
	case http.StatusPartialContent:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != d.have {
			return fmt.Errorf("download %s: server answered range %q to a request from byte %d", d.p.Name, resp.Header.Get("Content-Range"), d.have)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		// The file on the server is shorter than what we hold.
		return fmt.Errorf("%w: %s on the server is shorter than %d bytes", ErrSize, d.p.Name, d.have)
	case http.StatusNotFound, http.StatusForbidden, http.StatusGone:
		return fmt.Errorf("%w: %s: server says %s", errFatal, req.URL.Redacted(), resp.Status)
	default:
		return fmt.Errorf("download %s: server says %s", req.URL.Redacted(), resp.Status)
	}
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		d.etag = et
	}
	buf := make([]byte, 256<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if d.have+int64(n) > d.p.Size {
				return fmt.Errorf("%w: %s is longer than the manifest's %d bytes", ErrSize, d.p.Name, d.p.Size)
			}
			if _, err := d.f.Write(buf[:n]); err != nil {
				return fmt.Errorf("%w: write %s: %v", errFatal, d.f.Name(), err)
			}
			d.h.Write(buf[:n])
			d.have += int64(n)
			every := d.c.ProgressEvery
			if every == 0 {
				every = time.Second
			}
			if d.c.Progress != nil && time.Since(d.lastReport) >= every {
				d.lastReport = time.Now()
				d.c.report(d.progress(false))
			}
		}
		if rerr == io.EOF {
			if d.have < d.p.Size && resp.ContentLength >= 0 {
				// The server ended a complete response early: its file is
				// shorter than the manifest says.
				return fmt.Errorf("%w: %s ended at %d bytes, the manifest says %d", ErrSize, d.p.Name, d.have, d.p.Size)
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func (d *download) restart() error {
	if err := d.f.Truncate(0); err != nil {
		return err
	}
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	d.h.Reset()
	d.have, d.resumed = 0, 0
	return nil
}

// contentRangeStart parses "bytes START-END/SIZE".
func contentRangeStart(v string) (int64, bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	startStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(startStr, 10, 64)
	return n, err == nil
}
