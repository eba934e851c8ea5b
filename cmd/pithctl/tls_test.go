package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pith-os/pith/agent/authz"
	"github.com/pith-os/pith/agent/kv"
	"github.com/pith-os/pith/pki"
)

// TestClientCertificates runs the built pithctl against a keys API served
// as pithd serves it with a cluster CA (mutual TLS, the authz guard), and
// through a unix socket: flags and the PITHCTL_/ETCDCTL_ variables pick
// the certificate, and the role in it decides.
func TestClientCertificates(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "pithctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ca, err := pki.Init(dir, "t")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.IssueMember(dir, "node", nil); err != nil {
		t.Fatal(err)
	}
	rl, err := pki.NewReloader(filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key"), filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	st := kv.NewStore(kv.Options{})
	kvh := kv.NewServer(st, kv.NewLocal(st), kv.Limits{})
	sockPath := filepath.Join(dir, "pithd.sock")
	isSock := func(r *http.Request) bool { return r.TLS == nil && r.RemoteAddr == "@" }
	h := authz.Guard{Secure: true, FromSocket: isSock}.Wrap(kvh)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = rl.ServerConfig("")
	srv.StartTLS()
	defer srv.Close()
	sl, err := net.Listen("unix", sockPath)
	if err != nil {
		t.Fatal(err)
	}
	sock := &http.Server{Handler: h}
	go sock.Serve(sl)
	defer sock.Close()

	f := func(n string) string { return filepath.Join(dir, n) }
	run := func(env []string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), errb.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), 0
	}
	ep := "PITHCTL_ENDPOINTS=" + srv.URL
	// What core's pithctl dials on a TLS node it has no socket access on.
	plain := "http://" + srv.Listener.Addr().String()
	const advice = "this node's KV requires a client certificate: run as root (sudo pithctl ...)"
	for _, tc := range []struct {
		name   string
		env    []string
		args   []string
		stdout string
		stderr string
	}{
		{"admin by flags", []string{ep}, []string{"kv", "--no-sync", "--cacert", f("ca.crt"), "--cert", f("admin.crt"), "--key", f("admin.key"), "set", "/a", "1"}, "1\n", ""},
		{"admin by PITHCTL_", []string{ep, "PITHCTL_CACERT=" + f("ca.crt"), "PITHCTL_CERT=" + f("admin.crt"), "PITHCTL_KEY=" + f("admin.key")}, []string{"kv", "--no-sync", "set", "/a", "2"}, "2\n", ""},
		{"reader by ETCDCTL_ v2 names reads", []string{ep, "ETCDCTL_CA_FILE=" + f("ca.crt"), "ETCDCTL_CERT_FILE=" + f("reader.crt"), "ETCDCTL_KEY_FILE=" + f("reader.key")}, []string{"kv", "--no-sync", "get", "/a"}, "2\n", ""},
		{"reader by ETCDCTL_ v3 names writes", []string{ep, "ETCDCTL_CACERT=" + f("ca.crt"), "ETCDCTL_CERT=" + f("reader.crt"), "ETCDCTL_KEY=" + f("reader.key")}, []string{"kv", "--no-sync", "set", "/a", "3"}, "", "forbidden: role reader may not PUT /v2/keys/a"},
		{"no certificate", []string{ep}, []string{"kv", "--no-sync", "--cacert", f("ca.crt"), "get", "/a"}, "", "certificate"},
		{"plain HTTP to the TLS port, no certificate", []string{"PITHCTL_ENDPOINTS=" + plain}, []string{"kv", "--no-sync", "get", "/a"}, "", advice},
		{"plain HTTP to the TLS port, no certificate, syncing", []string{"PITHCTL_ENDPOINTS=" + plain}, []string{"kv", "get", "/a"}, "", advice},
		{"update status over plain HTTP to the TLS port", nil, []string{"update", "status", "--endpoint", plain}, "", advice},
		{"plain HTTP to the TLS port with a certificate speaks TLS", []string{"PITHCTL_ENDPOINTS=" + plain}, []string{"kv", "--no-sync", "--cacert", f("ca.crt"), "--cert", f("reader.crt"), "--key", f("reader.key"), "get", "/a"}, "2\n", ""},
		{"root socket", []string{"PITHCTL_ENDPOINTS=unix://" + sockPath}, []string{"kv", "set", "/a", "4"}, "4\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := run(tc.env, tc.args...)
			if tc.stderr == "" && (code != 0 || out != tc.stdout) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want stdout %q", code, out, errs, tc.stdout)
			}
			if tc.stderr != "" && (code == 0 || !strings.Contains(errs, tc.stderr)) {
				t.Fatalf("exit %d, stderr %q; want a failure saying %q", code, errs, tc.stderr)
			}
		})
	}
	ev, err := st.Get("/a", false, false)
	if err != nil || ev.Node.Value == nil || *ev.Node.Value != "4" || ev.Node.ModifiedIndex != 3 {
		t.Fatalf("store holds %+v %v, want /a=4 at index 3 (the reader's write changed nothing)", ev, err)
	}
}

// TestTLSPortKeepsOtherBadRequests: only Go's answer to plain HTTP on a TLS
// port is taken for one; any other 400 reaches the caller whole.
func TestTLSPortKeepsOtherBadRequests(t *testing.T) {
	for _, body := range []string{"", "short", strings.Repeat("a real complaint about the request. ", 20)} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, body, http.StatusBadRequest)
		}))
		base, rt, err := transport(srv.URL, &http.Transport{})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Transport: rt}).Get(base + "/v2/keys/a")
		if err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != http.StatusBadRequest || string(got) != body+"\n" {
			t.Fatalf("got %d %q, want 400 %q", resp.StatusCode, got, body+"\n")
		}
	}
}

// firstBytes records the first byte each accepted connection sent: 0x16
// opens a TLS handshake, a letter a plain HTTP request.
type firstBytes struct {
	net.Listener
	mu    sync.Mutex
	first []byte
}

func (l *firstBytes) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &firstByteConn{Conn: c, l: l}, nil
}

func (l *firstBytes) plain() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, b := range l.first {
		if b != 0x16 {
			n++
		}
	}
	return n
}

type firstByteConn struct {
	net.Conn
	l    *firstBytes
	seen bool
}

func (c *firstByteConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.seen {
		c.seen = true
		c.l.mu.Lock()
		c.l.first = append(c.l.first, p[0])
		c.l.mu.Unlock()
	}
	return n, err
}

// TestTLSUpgradeOnlyOnLoopback: against a TLS port (pithd's client port
// under a cluster CA), with a client certificate, a request with a body
// (a `kv set` value) goes straight over TLS to the default endpoint; a
// loopback endpoint written http:// is upgraded after Go's 400; an http://
// endpoint of another host is never resent over TLS, and the error says
// to write https://.
func TestTLSUpgradeOnlyOnLoopback(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Init(dir, "t")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.IssueMember(dir, "node", nil); err != nil {
		t.Fatal(err)
	}
	rl, err := pki.NewReloader(filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key"), filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	fb := &firstBytes{Listener: srv.Listener}
	srv.Listener = fb
	srv.TLS = rl.ServerConfig("")
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	saved := kvOpts.tls
	defer func() { kvOpts.tls = saved }()
	kvOpts.tls.TrustedCAFile = filepath.Join(dir, "ca.crt")
	kvOpts.tls.CertFile = filepath.Join(dir, "admin.crt")
	kvOpts.tls.KeyFile = filepath.Join(dir, "admin.key")
	// The server's name is not checked: a resend over TLS to the other
	// host's name would be accepted, so only the client's rule stops it.
	kvOpts.tls.InsecureSkipVerify = true
	for _, tc := range []struct {
		name, endpoint string
		plain          int    // connections that began in plain HTTP
		err            string // "" = the body arrives over TLS
	}{
		{"default endpoint goes straight to TLS", defaultEndpoint, 0, ""},
		{"loopback endpoint upgraded after the 400", "http://" + addr, 1, ""},
		{"other host's http:// endpoint is not resent over TLS", "http://pith-node.example:2379", 1, "use https://pith-node.example:2379"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			bodies = nil
			mu.Unlock()
			before := fb.plain()
			// Every endpoint's connections reach the test's TLS port.
			tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}}
			base, rt, err := transport(tc.endpoint, tr)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest(http.MethodPut, base+"/v2/keys/a", strings.NewReader("value=secret"))
			resp, err := (&http.Client{Transport: rt}).Do(req)
			if err == nil {
				resp.Body.Close()
			}
			mu.Lock()
			got := bodies
			mu.Unlock()
			if tc.err == "" && (err != nil || resp.StatusCode != http.StatusOK || len(got) != 1 || got[0] != "value=secret") {
				t.Errorf("%v (%v), bodies over TLS %q; want the body once over TLS", resp, err, got)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || len(got) != 0) {
				t.Errorf("err %v, bodies over TLS %q; want an error saying %q and nothing resent", err, got, tc.err)
			}
			if n := fb.plain() - before; n != tc.plain {
				t.Errorf("%d connections began in plain HTTP, want %d", n, tc.plain)
			}
		})
	}
}
