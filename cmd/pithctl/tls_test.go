package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
