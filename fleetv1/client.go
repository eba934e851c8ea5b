package fleetv1

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client speaks fleet's v1 API (to pithd or to fleet itself).
type Client struct {
	base string // scheme://host, no trailing slash
	http *http.Client
}

// NewClient accepts http(s)://host:port or unix:///path/to.sock, like
// fleetctl's --endpoint.
func NewClient(endpoint string) (*Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("bad endpoint %q: %v", endpoint, err)
	}
	switch u.Scheme {
	case "http", "https":
		return &Client{base: strings.TrimRight(endpoint, "/"), http: &http.Client{}}, nil
	case "unix":
		sock := u.Path
		if sock == "" {
			sock = u.Host
		}
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		return &Client{base: "http://unix", http: &http.Client{Transport: tr}}, nil
	}
	return nil, fmt.Errorf("bad endpoint %q: use http://HOST:PORT or unix:///PATH", endpoint)
}

// APIError is a non-2xx answer with fleet's error body.
type APIError struct {
	Code    int
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("API error %d", e.Code)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Code)
}

// IsNotFound reports a 404 from the API.
func IsNotFound(err error) bool {
	ae, ok := err.(*APIError)
	return ok && ae.Code == http.StatusNotFound
}

// UnavailableRetry is how long a call retries 503 answers: pithd answers
// 503 while a raft election is on or a leader change is not yet known
// (found by the e2e cluster test under TCG, where `pithctl start` failed on
// one such moment). Every fleet API call is idempotent, so retrying is safe.
var UnavailableRetry = 30 * time.Second

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var data []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		data = b
	}
	deadline := time.Now().Add(UnavailableRetry)
	delay := 100 * time.Millisecond
	for {
		err := c.doOnce(ctx, method, path, data, out)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != http.StatusServiceUnavailable || time.Now().Add(delay).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func (c *Client) doOnce(ctx context.Context, method, path string, data []byte, out any) error {
	var rd io.Reader
	if data != nil {
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if data != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != 0 {
			return &APIError{Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return &APIError{Code: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("undecodable answer from %s: %v", path, err)
		}
	}
	return nil
}

// Units lists every unit, following page tokens.
func (c *Client) Units(ctx context.Context) ([]*Unit, error) {
	return collect(ctx, c, Prefix+"/units", nil, func(p *UnitPage) ([]*Unit, string) { return p.Units, p.NextPageToken })
}

// collect GETs path page by page until the server gives no page token. A
// server that hands back the token it was just sent would loop forever.
func collect[T, P any](ctx context.Context, c *Client, path string, extra url.Values, page func(*P) ([]T, string)) ([]T, error) {
	var all []T
	tok := ""
	for {
		var p P
		if err := c.do(ctx, http.MethodGet, path+tokenQuery(tok, extra), nil, &p); err != nil {
			return nil, err
		}
		items, next := page(&p)
		all = append(all, items...)
		if next == "" {
			return all, nil
		}
		if next == tok {
			return nil, fmt.Errorf("%s: the server sent page token %q again", path, next)
		}
		tok = next
	}
}

func tokenQuery(tok string, extra url.Values) string {
	v := url.Values{}
	for k, vs := range extra {
		v[k] = vs
	}
	if tok != "" {
		v.Set("nextPageToken", tok)
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// Unit returns one unit, or nil if it does not exist.
func (c *Client) Unit(ctx context.Context, name string) (*Unit, error) {
	var u Unit
	err := c.do(ctx, http.MethodGet, Prefix+"/units/"+url.PathEscape(name), nil, &u)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// CreateUnit submits a unit (PUT with options).
func (c *Client) CreateUnit(ctx context.Context, u *Unit) error {
	return c.do(ctx, http.MethodPut, Prefix+"/units/"+url.PathEscape(u.Name), u, nil)
}

// SetUnitTargetState changes a unit's desired state.
func (c *Client) SetUnitTargetState(ctx context.Context, name, state string) error {
	return c.do(ctx, http.MethodPut, Prefix+"/units/"+url.PathEscape(name), &Unit{Name: name, DesiredState: state}, nil)
}

// DestroyUnit removes a unit.
func (c *Client) DestroyUnit(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, Prefix+"/units/"+url.PathEscape(name), nil, nil)
}

// UnitStates lists per-machine unit states, optionally filtered.
func (c *Client) UnitStates(ctx context.Context, units, machines []string) ([]*UnitState, error) {
	extra := url.Values{}
	if len(units) > 0 {
		extra["unitName"] = units
	}
	if len(machines) > 0 {
		extra["machineID"] = machines
	}
	return collect(ctx, c, Prefix+"/state", extra, func(p *UnitStatePage) ([]*UnitState, string) { return p.States, p.NextPageToken })
}

// Machines lists live machines.
func (c *Client) Machines(ctx context.Context) ([]*Machine, error) {
	return collect(ctx, c, Prefix+"/machines", nil, func(p *MachinePage) ([]*Machine, string) { return p.Machines, p.NextPageToken })
}

// Inspect streams /pith/v1/units/NAME/{status,journal} from the pithd at
// agentURL (the unit's machine) into w.
func Inspect(ctx context.Context, hc *http.Client, agentURL, name, what string, lines int, follow bool, w io.Writer) error {
	u := strings.TrimRight(agentURL, "/") + UnitsPath + url.PathEscape(name) + "/" + what
	if what == "journal" {
		u += "?lines=" + strconv.Itoa(lines)
		if follow {
			u += "&follow=true"
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent of %s at %s: %v", name, agentURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != 0 {
			return &APIError{Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return &APIError{Code: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
