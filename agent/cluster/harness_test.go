package cluster_test

// A cluster of real pithd processes on 127.0.0.1 for the process tests,
// on internal/pithdtest (one pithd build, fresh ports, processes whose logs
// a failed test shows): start, kill, pause and restart members.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pith-os/pith/discovery"
	"github.com/pith-os/pith/internal/kvcheck"
	"github.com/pith-os/pith/internal/pithdtest"
)

type member struct {
	name      string
	clientURL string
	peerURL   string
	dataDir   string
	logPath   string
	proc      *pithdtest.Proc // nil while not running
	extra     []string
}

type testCluster struct {
	t       *testing.T
	members []*member
	initial string
	token   string
	// ips gives member i its own loopback address (default 127.0.0.1).
	ips []string
}

// newCluster prepares n members (not started).
func newCluster(t *testing.T, n int, ips ...string) *testCluster {
	c := &testCluster{t: t, token: "test-" + t.Name(), ips: ips}
	dir := t.TempDir()
	var ic []string
	for i := 0; i < n; i++ {
		m := c.newMember(dir, fmt.Sprintf("m%d", i))
		ic = append(ic, m.name+"="+m.peerURL)
	}
	c.initial = strings.Join(ic, ",")
	t.Cleanup(c.stopAll)
	return c
}

func (c *testCluster) newMember(dir, name string) *member {
	ip := "127.0.0.1"
	if len(c.ips) > len(c.members) {
		ip = c.ips[len(c.members)]
	}
	m := &member{name: name,
		clientURL: fmt.Sprintf("http://%s:%d", ip, pithdtest.FreePort(c.t)),
		peerURL:   fmt.Sprintf("http://%s:%d", ip, pithdtest.FreePort(c.t)),
		dataDir:   filepath.Join(dir, name), logPath: filepath.Join(dir, name+".log")}
	c.members = append(c.members, m)
	return m
}

func (c *testCluster) start(i int, state string) {
	c.t.Helper()
	m := c.members[i]
	args := []string{"run", "--name", m.name, "--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster-token", c.token, "--initial-cluster-state", state}
	if c.initial != "" {
		args = append(args, "--initial-cluster", c.initial)
	}
	args = append(args, m.extra...)
	m.proc = pithdtest.Start(c.t, pithdtest.Binary(c.t), m.logPath, args...)
}

func (c *testCluster) startAll() {
	for i := range c.members {
		c.start(i, "new")
	}
}

// signal sends sig to member i; after SIGKILL or SIGTERM (a paused member
// is resumed first) it waits for the member to end.
func (c *testCluster) signal(i int, sig syscall.Signal) {
	m := c.members[i]
	if m.proc == nil {
		return
	}
	switch sig {
	case syscall.SIGKILL:
		m.proc.Kill()
		m.proc = nil
	case syscall.SIGTERM:
		m.proc.Resume()
		m.proc.Stop()
		m.proc = nil
	default:
		m.proc.Signal(sig)
	}
}

// stopAll kills every member still running (pithdtest shows the logs of
// a failed test).
func (c *testCluster) stopAll() {
	for i := range c.members {
		c.signal(i, syscall.SIGKILL)
	}
}

var httpc = &http.Client{Timeout: 5 * time.Second}

type stats struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Leader struct {
		Leader string `json:"leader"`
	} `json:"leaderInfo"`
}

func (c *testCluster) selfStats(i int) (*stats, error) {
	resp, err := httpc.Get(c.members[i].clientURL + "/v2/stats/self")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

// waitLeader polls the running members (skipping those in skip) until
// they all agree on a leader among them; returns its index. The loop is
// bounded by attempts, not by a clock.
func (c *testCluster) waitLeader(skip ...int) int {
	c.t.Helper()
	skipped := map[int]bool{}
	for _, s := range skip {
		skipped[s] = true
	}
	found := -1
	pithdtest.Poll(c.t, "a leader agreed on by the running members", func() (bool, string) {
		leader := ""
		for i, m := range c.members {
			if skipped[i] || m.proc == nil {
				continue
			}
			s, err := c.selfStats(i)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", m.name, err)
			}
			if s.Leader.Leader == "" || (leader != "" && s.Leader.Leader != leader) {
				return false, fmt.Sprintf("%s sees leader %q, others %q", m.name, s.Leader.Leader, leader)
			}
			leader = s.Leader.Leader
		}
		for i, m := range c.members {
			if skipped[i] || m.proc == nil {
				continue
			}
			if s, err := c.selfStats(i); err == nil && s.ID == leader && s.State == "StateLeader" {
				found = i
				return true, ""
			}
		}
		return false, fmt.Sprintf("leader %q is not a running member in state StateLeader", leader)
	})
	return found
}

// kvDo sends one keys request with httpc; status -1 means no answer.
func kvDo(ctx context.Context, base, method, key string, q url.Values) (int, *kvcheck.Resp, error) {
	return kvcheck.Do(ctx, httpc, base, method, key, q)
}

// mustPut retries a put on any member until one acknowledges it.
func (c *testCluster) mustPut(key, value string) {
	c.t.Helper()
	attempt := 0
	pithdtest.Poll(c.t, "a member acknowledging PUT "+key, func() (bool, string) {
		m := c.members[attempt%len(c.members)]
		attempt++
		if m.proc == nil {
			return false, m.name + " is not running"
		}
		st, _, err := kvDo(context.Background(), m.clientURL, "PUT", key, url.Values{"value": {value}})
		return st == 200 || st == 201, fmt.Sprintf("%s: %d %v", m.name, st, err)
	})
}

// quorumGet reads through member i with quorum=true, retrying while the
// cluster has no leader.
func (c *testCluster) quorumGet(i int, key string) (int, *kvcheck.Resp) {
	c.t.Helper()
	var st int
	var r *kvcheck.Resp
	pithdtest.Poll(c.t, "a quorum read of "+key+" through "+c.members[i].name, func() (bool, string) {
		var err error
		st, r, err = kvDo(context.Background(), c.members[i].clientURL, "GET", key, url.Values{"quorum": {"true"}, "recursive": {"true"}})
		return err == nil && st < 500, fmt.Sprintf("%d %v", st, err)
	})
	return st, r
}

// discoveryToken serves a discovery service (the code of pith discovery
// serve) for the test and returns a new token for a cluster of size.
func discoveryToken(t *testing.T, size int) string {
	t.Helper()
	d := discovery.New("")
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	d.PublicURL = srv.URL
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go d.Run(ctx)
	token, err := d.NewToken(size)
	if err != nil {
		t.Fatal(err)
	}
	return token
}
