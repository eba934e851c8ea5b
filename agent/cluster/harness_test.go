package cluster_test

// A harness for tests with real pithd processes on 127.0.0.1: the test
// builds pithd once, then starts, kills, pauses and restarts members.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	pithdBin  string
	buildErr  error
)

// pithd builds cmd/pithd into a temp dir once per test binary.
func pithd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("PITH_TEST_PITHD"); p != "" {
			pithdBin = p // built by the parent test (netns re-exec)
			return
		}
		dir, err := os.MkdirTemp("", "pithd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		pithdBin = filepath.Join(dir, "pithd")
		out, err := exec.Command("go", "build", "-o", pithdBin, "github.com/pith-os/pith/cmd/pithd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build pithd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pithdBin
}

var (
	portsMu sync.Mutex
	used    = map[int]bool{}
)

// freePort returns a port free now and never handed out before in this
// test binary (the kernel may offer a just-closed port again).
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for attempt := 0; attempt < 100; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !used[p] {
			used[p] = true
			return p
		}
	}
	t.Fatal("no fresh free port")
	return 0
}

type member struct {
	name      string
	clientURL string
	peerURL   string
	dataDir   string
	logPath   string
	cmd       *exec.Cmd
	done      chan struct{}
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
		clientURL: fmt.Sprintf("http://%s:%d", ip, freePort(c.t)),
		peerURL:   fmt.Sprintf("http://%s:%d", ip, freePort(c.t)),
		dataDir:   filepath.Join(dir, name), logPath: filepath.Join(dir, name+".log")}
	c.members = append(c.members, m)
	return m
}

func (c *testCluster) start(i int, state string) {
	c.t.Helper()
	m := c.members[i]
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	args := []string{"run", "--name", m.name, "--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster-token", c.token, "--initial-cluster-state", state}
	if c.initial != "" {
		args = append(args, "--initial-cluster", c.initial)
	}
	args = append(args, m.extra...)
	cmd := exec.Command(pithd(c.t), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(m.done) }()
}

func (c *testCluster) startAll() {
	for i := range c.members {
		c.start(i, "new")
	}
}

func (c *testCluster) signal(i int, sig syscall.Signal) {
	m := c.members[i]
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		if sig == syscall.SIGTERM {
			// Resume first in case the member is paused.
			_ = m.cmd.Process.Signal(syscall.SIGCONT)
		}
		<-m.done
		m.cmd = nil
	}
}

func (c *testCluster) stopAll() {
	for i, m := range c.members {
		if m.cmd != nil {
			_ = m.cmd.Process.Signal(syscall.SIGCONT)
			c.signal(i, syscall.SIGKILL)
		}
	}
	if c.t.Failed() {
		for _, m := range c.members {
			b, _ := os.ReadFile(m.logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			c.t.Logf("--- %s log (tail) ---\n%s", m.name, b)
		}
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
	for attempt := 0; attempt < 600; attempt++ {
		leader, agree := "", true
		for i, m := range c.members {
			if skipped[i] || m.cmd == nil {
				continue
			}
			s, err := c.selfStats(i)
			if err != nil || s.Leader.Leader == "" || (leader != "" && s.Leader.Leader != leader) {
				agree = false
				break
			}
			leader = s.Leader.Leader
		}
		if agree && leader != "" {
			for i, m := range c.members {
				if skipped[i] || m.cmd == nil {
					continue
				}
				if s, err := c.selfStats(i); err == nil && s.ID == leader && s.State == "StateLeader" {
					return i
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("no leader agreed on by the running members")
	return -1
}

type kvResp struct {
	Action string `json:"action"`
	Node   struct {
		Key           string `json:"key"`
		Value         string `json:"value"`
		ModifiedIndex uint64 `json:"modifiedIndex"`
		Nodes         []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"nodes"`
	} `json:"node"`
	ErrorCode int    `json:"errorCode"`
	Message   string `json:"message"`
	Cause     string `json:"cause"`
}

// kvDo sends one keys request; status -1 means no answer.
func kvDo(ctx context.Context, base, method, key string, q url.Values) (int, *kvResp, error) {
	u := base + "/v2/keys" + key
	var body io.Reader
	if method == "GET" {
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
	} else {
		body = strings.NewReader(q.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return -1, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return -1, nil, err
	}
	defer resp.Body.Close()
	var r kvResp
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, &r, nil
}

// mustPut retries a put on any member until one acknowledges it.
func (c *testCluster) mustPut(key, value string) {
	c.t.Helper()
	for attempt := 0; attempt < 300; attempt++ {
		m := c.members[attempt%len(c.members)]
		if m.cmd != nil {
			st, _, _ := kvDo(context.Background(), m.clientURL, "PUT", key, url.Values{"value": {value}})
			if st == 200 || st == 201 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("no member acknowledged PUT %s", key)
}

// quorumGet reads through member i with quorum=true, retrying while the
// cluster has no leader.
func (c *testCluster) quorumGet(i int, key string) (int, *kvResp) {
	c.t.Helper()
	for attempt := 0; attempt < 300; attempt++ {
		st, r, err := kvDo(context.Background(), c.members[i].clientURL, "GET", key, url.Values{"quorum": {"true"}, "recursive": {"true"}})
		if err == nil && st < 500 {
			return st, r
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("quorum read of %s through %s never answered", key, c.members[i].name)
	return 0, nil
}
