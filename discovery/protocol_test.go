package discovery

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	etcd "go.etcd.io/etcd/client/v2"

	"github.com/pith-os/pith/agent/kv"
)

// startService serves d on a loopback port until the test ends.
func startService(t *testing.T, opt Options) (*Service, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	d, err := Open(base, opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ln) }()
	go d.Run(ctx)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return d, base
}

// etcdJoin walks etcd's v2 discovery protocol with etcd's own client, as
// etcd does on boot (server/etcdserver/api/v2discovery): read the size,
// list the token, create self with prevExist=false, watch its own key from
// the create's index, list again, then watch the token recursively from
// the list's index until size members registered. It returns the first
// size registrations by creation index.
func etcdJoin(ctx context.Context, tokenURL, id, value string) ([]string, error) {
	i := strings.Index(tokenURL, kv.KeysPrefix)
	c, err := etcd.New(etcd.Config{Endpoints: []string{tokenURL[:i]}})
	if err != nil {
		return nil, err
	}
	kapi := etcd.NewKeysAPIWithPrefix(c, "")
	cluster := tokenURL[i:]
	check := func() ([]*etcd.Node, int, uint64, error) {
		r, err := kapi.Get(ctx, path.Join(cluster, "_config", "size"), nil)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("size: %w", err)
		}
		size, err := strconv.Atoi(r.Node.Value)
		if err != nil {
			return nil, 0, 0, err
		}
		r, err = kapi.Get(ctx, cluster, nil)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("list: %w", err)
		}
		var nodes []*etcd.Node
		for _, n := range r.Node.Nodes {
			if path.Base(n.Key) != "_config" {
				nodes = append(nodes, n)
			}
		}
		sort.Slice(nodes, func(a, b int) bool { return nodes[a].CreatedIndex < nodes[b].CreatedIndex })
		return nodes, size, r.Index, nil
	}
	if _, _, _, err := check(); err != nil {
		return nil, err
	}
	self := path.Join(cluster, id)
	r, err := kapi.Create(ctx, self, value)
	if err != nil {
		return nil, fmt.Errorf("create self: %w", err)
	}
	if _, err := kapi.Watcher(self, &etcd.WatcherOptions{AfterIndex: r.Node.CreatedIndex - 1}).Next(ctx); err != nil {
		return nil, fmt.Errorf("watch self: %w", err)
	}
	nodes, size, index, err := check()
	if err != nil {
		return nil, err
	}
	w := kapi.Watcher(cluster, &etcd.WatcherOptions{AfterIndex: index, Recursive: true})
	for len(nodes) < size {
		r, err := w.Next(ctx)
		if err != nil {
			return nil, fmt.Errorf("watch token: %w", err)
		}
		nodes = append(nodes, r.Node)
	}
	var out []string
	for _, n := range nodes[:size] {
		out = append(out, path.Base(n.Key)+"="+n.Value)
	}
	return out, nil
}

// TestDiscoveryEtcdClient: three members running etcd's discovery steps
// at once, with etcd's v2 client, agree on the same three founders.
func TestDiscoveryEtcdClient(t *testing.T) {
	d, _ := startService(t, Options{})
	tok, err := d.NewToken(3)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := make([][]string, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("8e9e05c52164694%d", i)
			got[i], errs[i] = etcdJoin(ctx, tok, id, fmt.Sprintf("n%d=http://10.0.0.%d:2380", i, i+1))
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("member %d: %v", i, errs[i])
		}
		if len(got[i]) != 3 || strings.Join(got[i], " ") != strings.Join(got[0], " ") {
			t.Fatalf("member %d found %v, member 0 %v", i, got[i], got[0])
		}
	}
	// A fourth with the same id as a founder is refused as etcd expects
	// (ErrDuplicateID comes from this 105), and the founder's entry stays.
	kc, _ := etcd.New(etcd.Config{Endpoints: []string{d.PublicURL}})
	_, err = etcd.NewKeysAPIWithPrefix(kc, "").Create(ctx, tok[strings.Index(tok, kv.KeysPrefix):]+"/8e9e05c521646940", "evil=http://6.6.6.6:2380")
	var ee etcd.Error
	if !asEtcdError(err, &ee) || ee.Code != etcd.ErrorCodeNodeExist {
		t.Fatalf("duplicate create: %v", err)
	}
	if !strings.Contains(strings.Join(got[0], " "), "8e9e05c521646940=n0=http://10.0.0.1:2380") {
		t.Fatalf("founders %v lack member 0's own entry", got[0])
	}
}

func asEtcdError(err error, e *etcd.Error) bool {
	switch v := err.(type) {
	case etcd.Error:
		*e = v
		return true
	case *etcd.Error:
		*e = *v
		return true
	}
	return false
}

// TestDiscoverySlowClients holds every connection slot with clients that
// send headers or a body too slowly (slowloris), and checks that the
// service cuts each of them off, then serves a normal client; the slow
// registration leaves nothing behind.
func TestDiscoverySlowClients(t *testing.T) {
	d, base := startService(t, Options{HeaderTimeout: 200 * time.Millisecond, MaxConns: 3})
	tok, err := d.NewToken(3)
	if err != nil {
		t.Fatal(err)
	}
	tokPath := tok[strings.Index(tok, kv.KeysPrefix):]
	before := discoveryDump(t, d)
	addr := strings.TrimPrefix(base, "http://")
	slow := []string{
		"GET /health HTTP/1.1\r\nHost: x\r\n",      // headers never end
		"GET /health HTTP/1.1\r\nHost: x\r\nX-A: ", // stalls mid-header
		"PUT " + tokPath + "/slow?prevExist=false HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nvalue=slo", // body never ends
	}
	conns := make([]net.Conn, len(slow))
	for i, s := range slow {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	// Every slot is taken: a normal client waits until the service drops
	// a slow one.
	health := make(chan error, 1)
	go func() {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		health <- err
	}()
	for i, c := range conns {
		// The service ends the connection (maybe after an error answer);
		// the test never closes it itself before this read returns.
		b, err := io.ReadAll(bufio.NewReader(c))
		if err != nil {
			t.Errorf("slow client %d: %v", i, err)
		}
		if i == 2 && !strings.HasPrefix(string(b), "HTTP/1.1 400") {
			t.Errorf("slow body answered %q, want a 400", b)
		}
	}
	if err := <-health; err != nil {
		t.Fatalf("normal client after the slow ones: %v", err)
	}
	if after := discoveryDump(t, d); after != before {
		t.Fatalf("slow clients changed the state:\n%s", after)
	}
}

// TestDiscoveryOversized sends over a real connection a body far over the
// limit, headers over the limit, and a key over the limit: each refused,
// nothing stored.
func TestDiscoveryOversized(t *testing.T) {
	d, base := startService(t, Options{})
	tok, err := d.NewToken(3)
	if err != nil {
		t.Fatal(err)
	}
	before := discoveryDump(t, d)
	cases := []struct {
		name   string
		req    func() (*http.Request, error)
		status int
	}{
		// 64 KiB: far over the limit, yet small enough for the socket
		// buffers, so the client reads the answer instead of a reset.
		{"64 KiB body", func() (*http.Request, error) {
			r, err := http.NewRequest("PUT", tok+"/big?prevExist=false", strings.NewReader("value="+strings.Repeat("v", 64<<10)))
			if r != nil {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			return r, err
		}, 413},
		{"64 KiB header", func() (*http.Request, error) {
			r, err := http.NewRequest("GET", tok, nil)
			if r != nil {
				r.Header.Set("X-Big", strings.Repeat("h", 64<<10))
			}
			return r, err
		}, 431},
		{"8 KiB key", func() (*http.Request, error) {
			return http.NewRequest("GET", base+kv.KeysPrefix+RegistryPrefix+"/"+strings.Repeat("a", 8<<10), nil)
		}, 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := c.req()
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.status)
			}
			if after := discoveryDump(t, d); after != before {
				t.Fatalf("state changed:\n%s", after)
			}
		})
	}
}
