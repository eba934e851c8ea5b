package channels

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Rollout fetches the channel's rollout document; nil (and no error) when
// the server has none, so the node takes what the signed channel offers.
func (c *Client) Rollout(ctx context.Context, channel string) (*RolloutDoc, error) {
	if channel == "" {
		channel = c.Policy.Channel
	}
	if !ValidChannelName(channel) {
		return nil, fmt.Errorf("channel %q: use lowercase letters, digits, '.', '_' or '-'", channel)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("v1/rollout/"+channel), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("rollout of %s: server says %s", channel, resp.Status)
	}
	var d RolloutDoc
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxManifestBytes)).Decode(&d); err != nil {
		return nil, fmt.Errorf("rollout of %s: %v", channel, err)
	}
	if d.Channel != channel {
		return nil, fmt.Errorf("rollout: asked for channel %s, got %s", channel, d.Channel)
	}
	return &d, nil
}

// VersionManifest fetches a version's manifest as first released
// (REPO/<version>/manifest.json(.sig)) and verifies it against the
// client's policy: it must be signed, unexpired, for this channel and
// platform, and newer than the running release. A barrier or pin takes a
// node to such an earlier release of its channel.
func (c *Client) VersionManifest(ctx context.Context, version string) (*Manifest, error) {
	if _, err := ParseVersion(version); err != nil {
		return nil, err
	}
	body, err := c.get(ctx, version+"/"+versionManifest)
	if err != nil {
		return nil, err
	}
	sig, err := c.get(ctx, version+"/"+versionManifest+sigSuffix)
	if err != nil {
		return nil, err
	}
	m, err := Verify(body, sig, c.Policy)
	if err != nil {
		return nil, fmt.Errorf("release %s at %s: %w", version, c.Base.Redacted(), err)
	}
	if m.Version != version {
		return nil, fmt.Errorf("release %s at %s: the manifest says %s", version, c.Base.Redacted(), m.Version)
	}
	return m, nil
}

// SendReport POSTs a signed report (best-effort: the caller bounds ctx).
func (c *Client) SendReport(ctx context.Context, signed []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("v1/report"), bytes.NewReader(signed))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return errors.New("report: server says " + resp.Status + ": " + string(bytes.TrimSpace(msg)))
	}
	return nil
}

// ErrHeldBack: the channel offers a newer release but its rollout holds
// this machine back for now. It wraps ErrNotNewer, so an agent treats it
// as "nothing to do yet".
var ErrHeldBack = fmt.Errorf("%w: held back by the channel's rollout", ErrNotNewer)

// RolloutGate returns a Client.Gate that applies the channel's rollout to
// the machine: it fetches the rollout document and takes the offered
// release, an earlier signed one (barrier, pin), or holds back. decided,
// when set, hears each decision (the node reports it). A rollout document
// that cannot be fetched holds the machine back until the next check; a
// server without rollouts (404) lets it take the offer.
func (c *Client) RolloutGate(machineID, group string, decided func(offered string, d Decision, err error)) func(context.Context, *Manifest) (*Manifest, error) {
	if group == "" {
		group = "default"
	}
	return func(ctx context.Context, m *Manifest) (*Manifest, error) {
		note := func(d Decision, err error) {
			if decided != nil {
				decided(m.Version, d, err)
			}
		}
		doc, err := c.Rollout(ctx, m.Channel)
		if err != nil {
			note(Decision{}, err)
			return nil, err
		}
		d := doc.Decide(machineID, group, c.Policy.Running, m.Version)
		switch d.Take {
		case m.Version:
			note(d, nil)
			return m, nil
		case "":
			note(d, nil)
			return nil, fmt.Errorf("%w: %s", ErrHeldBack, d.Reason)
		}
		em, err := c.VersionManifest(ctx, d.Take)
		note(d, err)
		if err != nil {
			return nil, fmt.Errorf("rollout: %s: %w", d.Reason, err)
		}
		return em, nil
	}
}
