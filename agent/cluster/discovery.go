package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Discovery implements etcd's v2 discovery protocol against a discovery
// URL (a KV directory such as http://host/v2/keys/_etcd/registry/<token>):
// the expected size is in <url>/_config/size; each member registers
// <url>/<id> = "name=peerURL,..."; the first `size` registrations (by
// creation index) found the cluster.
type Discovery struct {
	URL      string
	Name     string
	ID       string
	PeerURLs []string
	Client   *http.Client
	// Poll is the interval between registry reads while waiting.
	Poll time.Duration
}

type discoNode struct {
	Key          string       `json:"key"`
	Value        string       `json:"value"`
	Dir          bool         `json:"dir"`
	Nodes        []*discoNode `json:"nodes"`
	CreatedIndex uint64       `json:"createdIndex"`
}

type discoResp struct {
	Node      *discoNode `json:"node"`
	ErrorCode int        `json:"errorCode"`
	Message   string     `json:"message"`
}

func (d *Discovery) client() *http.Client {
	if d.Client != nil {
		return d.Client
	}
	return &http.Client{Timeout: 30 * time.Second}
}

func (d *Discovery) do(ctx context.Context, method, u string, form url.Values) (*discoResp, int, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, 0, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := d.client().Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var r discoResp
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&r); err != nil {
		return nil, resp.StatusCode, fmt.Errorf("discovery %s: answer is not etcd JSON: %w", u, err)
	}
	return &r, resp.StatusCode, nil
}

// Result is what discovery decided for this node.
type DiscoveryResult struct {
	Size int
	// Founders are the first Size registered members.
	Founders []InitialMember
	// Founder reports whether this node is one of them; if not, it must
	// join the running cluster (see JoinCluster).
	Founder bool
}

// Run registers this node and waits until the cluster size is reached.
func (d *Discovery) Run(ctx context.Context) (*DiscoveryResult, error) {
	base := strings.TrimRight(d.URL, "/")
	if _, err := url.Parse(base); err != nil {
		return nil, fmt.Errorf("--discovery %q: %w", d.URL, err)
	}
	poll := d.Poll
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	r, status, err := d.do(ctx, "GET", base+"/_config/size", nil)
	if err != nil {
		return nil, fmt.Errorf("discovery: read size: %w", err)
	}
	if status == http.StatusNotFound || r.Node == nil {
		return nil, fmt.Errorf("discovery %s: no _config/size: create the token with `pith discovery new --size N`", d.URL)
	}
	size, err := strconv.Atoi(r.Node.Value)
	if err != nil || size < 1 {
		return nil, fmt.Errorf("discovery %s: size %q is not a positive number", d.URL, r.Node.Value)
	}
	var reg []string
	for _, u := range d.PeerURLs {
		reg = append(reg, d.Name+"="+u)
	}
	value := strings.Join(reg, ",")
	r, status, err = d.do(ctx, "PUT", base+"/"+d.ID+"?prevExist=false", url.Values{"value": {value}})
	if err != nil {
		return nil, fmt.Errorf("discovery: register: %w", err)
	}
	if status != http.StatusCreated && r.ErrorCode != 105 {
		return nil, fmt.Errorf("discovery: register: %s", r.Message)
	}
	for {
		r, _, err := d.do(ctx, "GET", base+"?recursive=true", nil)
		if err == nil && r.Node != nil {
			var regs []*discoNode
			for _, n := range r.Node.Nodes {
				if !n.Dir && !strings.HasSuffix(n.Key, "/_config") {
					regs = append(regs, n)
				}
			}
			sort.Slice(regs, func(i, j int) bool { return regs[i].CreatedIndex < regs[j].CreatedIndex })
			if len(regs) >= size {
				res := &DiscoveryResult{Size: size}
				for _, n := range regs[:size] {
					m, err := parseRegistration(n.Value)
					if err != nil {
						return nil, fmt.Errorf("discovery: entry %s: %w", n.Key, err)
					}
					res.Founders = append(res.Founders, m)
					if strings.HasSuffix(n.Key, "/"+d.ID) {
						res.Founder = true
					}
				}
				return res, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("discovery: waiting for %d members: %w", size, ctx.Err())
		case <-time.After(poll):
		}
	}
}

func parseRegistration(v string) (InitialMember, error) {
	var m InitialMember
	for _, part := range strings.Split(v, ",") {
		name, u, ok := strings.Cut(part, "=")
		if !ok {
			return m, fmt.Errorf("bad registration %q", v)
		}
		m.Name = name
		m.PeerURLs = append(m.PeerURLs, u)
	}
	return m, nil
}

// JoinCluster asks a running cluster to add this node, through any
// member's peer port (the request is forwarded to the leader). A node
// already added (restart) is not an error.
func JoinCluster(ctx context.Context, members []InitialMember, clientTLS *tls.Config, name string, peerURLs []string) error {
	m := &peerMux{tls: clientTLS}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return m.dial(ctx, addr, protoHTTP)
	}}}
	// A transport per call (pithd retries every second until it is added):
	// its kept-alive connections would otherwise never be closed.
	defer hc.CloseIdleConnections()
	body, _ := json.Marshal(map[string]any{"name": name, "peerURLs": peerURLs})
	var errs []error
	for _, mb := range members {
		addr, err := peerAddr(mb.PeerURLs[0])
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v2/members", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusCreated, http.StatusConflict:
			return nil
		default:
			errs = append(errs, fmt.Errorf("%s: %d %s", mb.Name, resp.StatusCode, bytes.TrimSpace(b)))
		}
	}
	return fmt.Errorf("join cluster: no member added us: %w", errors.Join(errs...))
}
