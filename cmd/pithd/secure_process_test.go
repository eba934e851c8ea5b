package main

// A three-member cluster with a cluster CA (pith cluster init/issue), as an
// operator runs it: mutual TLS with roles on both ports. Hostile clients
// are refused and change nothing; etcd's v2 client and fleet's fleetctl
// work with the admin certificate; a renewed member certificate is served
// without a restart.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pith-os/pith/internal/pithdtest"

	etcd "go.etcd.io/etcd/client/v2"

	"github.com/pith-os/pith/pki"
)

type secureCluster struct {
	t    *testing.T
	dir  string // the cluster directory: ca.crt, admin.*, reader.*, mN.*
	ca   *pki.CA
	pool *x509.CertPool
	ms   []*secMember
}

type secMember struct {
	client, peer, dir, log string
	proc                   *pithdtest.Proc
}

// startSecureCluster starts n members with member certificates from a
// fresh cluster CA and the simulated unit backend.
func startSecureCluster(t *testing.T, n int) *secureCluster {
	t.Helper()
	dir := t.TempDir()
	bin := pithdtest.Binary(t)
	ca, err := pki.Init(filepath.Join(dir, "pki"), "test")
	if err != nil {
		t.Fatal(err)
	}
	c := &secureCluster{t: t, dir: filepath.Join(dir, "pki"), ca: ca, pool: x509.NewCertPool()}
	c.pool.AddCert(ca.Cert)
	var ic []string
	for i := 0; i < n; i++ {
		m := &secMember{
			client: fmt.Sprintf("https://127.0.0.1:%d", pithdtest.FreePort(t)),
			peer:   fmt.Sprintf("https://127.0.0.1:%d", pithdtest.FreePort(t)),
			dir:    filepath.Join(dir, fmt.Sprintf("m%d", i)), log: filepath.Join(dir, fmt.Sprintf("m%d.log", i))}
		if err := ca.IssueMember(c.dir, fmt.Sprintf("m%d", i), nil); err != nil {
			t.Fatal(err)
		}
		c.ms = append(c.ms, m)
		ic = append(ic, fmt.Sprintf("m%d=%s", i, m.peer))
	}
	// pithdtest kills the members at the end and shows their logs if
	// the test failed.
	for i, m := range c.ms {
		name := fmt.Sprintf("m%d", i)
		// Only the client-side TLS flags, as cloud-config's pith.kv.tls
		// writes them: the peer port takes the same files.
		m.proc = pithdtest.Start(t, bin, m.log, "run", "--name", name, "--data-dir", m.dir,
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--initial-cluster", strings.Join(ic, ","), "--initial-cluster-token", "secure-test",
			"--cert-file", filepath.Join(c.dir, name+".crt"), "--key-file", filepath.Join(c.dir, name+".key"),
			"--trusted-ca-file", filepath.Join(c.dir, "ca.crt"),
			"--unix-socket", m.dir+".api.sock",
			"--unit-backend", "sim", "--machine-id", fmt.Sprintf("%032x", 0xb0+i), "--metadata", fmt.Sprintf("n=%d", i),
			"--agent-ttl", "1s", "--fleet-socket", m.dir+".fleet.sock")
	}
	admin := c.client("admin")
	pithdtest.Poll(t, "three machines over mutual TLS", func() (bool, string) {
		resp, err := admin.Get(c.ms[0].client + "/fleet/v1/machines")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var p struct{ Machines []json.RawMessage }
		json.NewDecoder(resp.Body).Decode(&p)
		return len(p.Machines) == n, fmt.Sprint(resp.Status, len(p.Machines))
	})
	// On every member: a client's Sync may ask any of them, and one that
	// has not applied the last publication yet lists fewer URLs.
	pithdtest.Poll(t, "every member's client URL published on every member", func() (bool, string) {
		for _, m := range c.ms {
			resp, err := admin.Get(m.client + "/v2/members")
			if err != nil {
				return false, err.Error()
			}
			var p struct {
				Members []struct{ ClientURLs []string }
			}
			json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			published := 0
			for _, pm := range p.Members {
				if len(pm.ClientURLs) > 0 {
					published++
				}
			}
			if published != n {
				return false, fmt.Sprintf("%d on %s", published, m.client)
			}
		}
		return true, ""
	})
	return c
}

// tlsConfig is a client config with DIR/name.crt, or none when name is "".
func (c *secureCluster) tlsConfig(dir, name string) *tls.Config {
	conf := &tls.Config{RootCAs: c.pool}
	if name != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
		if err != nil {
			c.t.Fatal(err)
		}
		// Sent whatever CA the server asks for: a hostile client does.
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return conf
}

func (c *secureCluster) client(name string) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: c.tlsConfig(c.dir, name)}, Timeout: time.Minute}
}

// state is what the hostile requests must not change.
type clusterState struct {
	etcdIndex, seed, units, members, lock, machines string
}

func (c *secureCluster) state(admin *http.Client) clusterState {
	c.t.Helper()
	get := func(path string) (string, http.Header) {
		// A quorum read through the leader's log: what every member will see.
		resp, err := admin.Get(c.ms[1].client + path)
		if err != nil {
			c.t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b)), resp.Header
	}
	var s clusterState
	var h http.Header
	s.seed, h = get("/v2/keys/seed?quorum=true")
	s.etcdIndex = h.Get("X-Etcd-Index")
	s.lock, _ = get("/v2/keys/coreos.com/updateengine/rebootlock/semaphore?quorum=true")
	s.units, _ = get("/fleet/v1/units")
	s.members, _ = get("/v2/members")
	var ms struct {
		Machines []struct{ ID string }
	}
	body, _ := get("/fleet/v1/machines")
	json.Unmarshal([]byte(strings.SplitN(body, " ", 2)[1]), &ms)
	s.machines = fmt.Sprint(len(ms.Machines))
	return s
}

func TestSecureHostileClients(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pithd processes")
	}
	c := startSecureCluster(t, 3)
	admin := c.client("admin")
	var claim string // X-Pith-Role sent by do
	do := func(cl *http.Client, method, u, ctype string, body io.Reader) (int, string, error) {
		req, err := http.NewRequest(method, u, body)
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if claim != "" {
			req.Header.Set("X-Pith-Role", claim)
		}
		resp, err := cl.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	form := "application/x-www-form-urlencoded"
	// Seed: a key and a unit, written by the admin; root's socket works
	// without a certificate.
	if st, b, err := do(admin, "PUT", c.ms[0].client+"/v2/keys/seed", form, strings.NewReader("value=1")); err != nil || st != 201 {
		t.Fatalf("admin seed: %d %s %v", st, b, err)
	}
	unit := `{"desiredState":"inactive","options":[{"section":"Service","name":"ExecStart","value":"/bin/true"}]}`
	if st, b, err := do(admin, "PUT", c.ms[0].client+"/fleet/v1/units/seed.service", "application/json", strings.NewReader(unit)); err != nil || st != 201 {
		t.Fatalf("admin unit: %d %s %v", st, b, err)
	}
	sock := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", c.ms[2].dir+".api.sock")
	}}}
	if st, b, err := do(sock, "PUT", "http://pithd/v2/keys/from-root", form, strings.NewReader("value=r")); err != nil || st != 201 {
		t.Fatalf("root over the unix socket: %d %s %v", st, b, err)
	}
	for _, s := range []string{".api.sock", ".fleet.sock"} {
		if fi, err := os.Stat(c.ms[2].dir + s); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode: %v %v, want 0600 (root only)", s, fi.Mode(), err)
		}
	}
	before := c.state(admin)
	t.Logf("state before: %+v", before)

	// Foreign and broken credentials.
	other := t.TempDir()
	if _, err := pki.Init(other, "other"); err != nil {
		t.Fatal(err)
	}
	old := pki.Request{Name: "old-admin", Role: pki.Admin, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}
	if err := c.ca.IssueFiles(other, "expired", old); err != nil {
		t.Fatal(err)
	}
	otherCA := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tlsConfig(other, "admin")}}
	expired := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tlsConfig(other, "expired")}}
	noCert := c.client("")
	reader := c.client("reader")
	member := c.client("m1")
	plain := &http.Client{}
	lead, follower := c.ms[0].client, c.ms[1].client
	memberBody := `{"peerURLs":["https://127.0.0.1:1"],"name":"evil"}`
	var memberID string
	{
		_, b, _ := do(reader, "GET", lead+"/v2/members", "", nil)
		var ms struct{ Members []struct{ ID string } }
		json.Unmarshal([]byte(b), &ms)
		if len(ms.Members) != 3 {
			t.Fatalf("reader lists members: %s", b)
		}
		memberID = ms.Members[2].ID
	}
	big := "value=" + strings.Repeat("x", 3<<20)
	heartbeat := `{"machine":{"id":"` + strings.Repeat("e", 32) + `"},"units":[]}`
	for _, tc := range []struct {
		name          string
		cl            *http.Client
		method, url   string
		ctype, body   string
		status        int    // 0: the TLS handshake must fail
		inBody, inErr string // substrings of the answer / the error
		claim         string // an X-Pith-Role header the client sends
	}{
		{"no certificate", noCert, "PUT", lead + "/v2/keys/seed", form, "value=2", 0, "", "certificate required", ""},
		{"another CA's admin", otherCA, "PUT", lead + "/v2/keys/seed", form, "value=2", 0, "", "unknown certificate authority", ""},
		{"expired admin", expired, "PUT", lead + "/v2/keys/seed", form, "value=2", 0, "", "expired certificate", ""},
		{"plain HTTP to the TLS port", plain, "PUT", strings.Replace(lead, "https:", "http:", 1) + "/v2/keys/seed", form, "value=2", 400, "HTTPS server", "", ""},
		{"reader writes a key", reader, "PUT", lead + "/v2/keys/seed", form, "value=2", 403, "role reader may not PUT /v2/keys/seed", "", ""},
		{"reader writes through a follower", reader, "PUT", follower + "/v2/keys/seed", form, "value=2", 403, "role reader", "", ""},
		{"reader deletes a key", reader, "DELETE", lead + "/v2/keys/seed", "", "", 403, "role reader", "", ""},
		{"reader claims admin", reader, "PUT", lead + "/v2/keys/seed", form, "value=2", 403, "role reader", "", "admin"},
		{"reader claims root through a follower", reader, "PUT", follower + "/v2/keys/seed", form, "value=2", 403, "role reader", "", "root"},
		{"reader submits a unit", reader, "PUT", lead + "/fleet/v1/units/evil.service", "application/json", unit, 403, "role reader may not PUT /fleet/v1/units/evil.service", "", ""},
		{"reader starts a unit", reader, "PUT", follower + "/fleet/v1/units/seed.service", "application/json", `{"desiredState":"launched"}`, 403, "role reader", "", ""},
		{"reader destroys a unit", reader, "DELETE", lead + "/fleet/v1/units/seed.service", "", "", 403, "role reader", "", ""},
		{"reader adds a member", reader, "POST", lead + "/v2/members", "application/json", memberBody, 403, "role reader may not POST /v2/members", "", ""},
		{"reader removes a member", reader, "DELETE", lead + "/v2/members/" + memberID, "", "", 403, "role reader", "", ""},
		{"reader takes the reboot lock", reader, "PUT", lead + "/v2/keys/coreos.com/updateengine/rebootlock/semaphore", form, `value={"semaphore":0,"max":1,"holders":["x"]}`, 403, "role reader", "", ""},
		{"reader breaks the reboot lock", reader, "POST", lead + "/pith/v1/locks/unlock", form, "holder=x", 403, "role reader", "", ""},
		{"reader forges a heartbeat", reader, "POST", lead + "/pith/v1/schedule/heartbeat", "application/json", heartbeat, 403, "role reader", "", ""},
		{"admin forges a heartbeat", admin, "POST", lead + "/pith/v1/schedule/heartbeat", "application/json", heartbeat, 403, "role admin", "", ""},
		{"member certificate writes a key", member, "PUT", follower + "/v2/keys/seed", form, "value=2", 403, "role member may not PUT", "", ""},
		{"member certificate submits a unit", member, "PUT", lead + "/fleet/v1/units/evil.service", "application/json", unit, 403, "role member", "", ""},
		{"dot segments around the table", reader, "PUT", lead + "/v2/keys/../../fleet/v1/units/evil.service", "application/json", unit, 403, "", "", ""},
		{"admin on the peer port", admin, "GET", c.ms[0].peer + "/v2/keys/seed", "", "", 0, "", "bad certificate", ""},
		{"reader on the peer port", reader, "GET", c.ms[1].peer + "/v2/keys/seed", "", "", 0, "", "bad certificate", ""},
		{"oversized value", admin, "PUT", lead + "/v2/keys/seed", form, big, 400, "request body over the limit", "", ""},
		{"oversized unit", admin, "PUT", lead + "/fleet/v1/units/huge.service", "application/json", `{"desiredState":"inactive","options":[{"section":"Service","name":"ExecStart","value":"` + strings.Repeat("x", 8<<20) + `"}]}`, 413, "", "", ""},
		{"oversized member body", admin, "POST", lead + "/v2/members", "application/json", `{"name":"` + strings.Repeat("x", 128<<10) + `"}`, 400, "too large", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			claim = tc.claim
			st, b, err := do(tc.cl, tc.method, tc.url, tc.ctype, body)
			if tc.status == 0 {
				if err == nil {
					t.Fatalf("handshake succeeded: %d %s", st, b)
				}
				if !strings.Contains(err.Error(), tc.inErr) {
					t.Fatalf("error %v, want it to say %q", err, tc.inErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if st != tc.status || !strings.Contains(b, tc.inBody) {
				t.Fatalf("%d %q, want %d saying %q", st, b, tc.status, tc.inBody)
			}
			if st == 403 && strings.Count(strings.TrimSpace(b), "\n") != 0 {
				t.Fatalf("refusal is not one line: %q", b)
			}
		})
	}

	// Slowloris: connections that dribble a TLS hello, or finish the
	// handshake and never end their headers, are closed by the server,
	// and other clients are served meanwhile.
	host := strings.TrimPrefix(lead, "https://")
	var slow []net.Conn
	for i := 0; i < 20; i++ {
		raw, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		raw.Write([]byte{0x16, 0x03, 0x01}) // the start of a record, no more
		slow = append(slow, raw)
		conf := c.tlsConfig(c.dir, "admin")
		conf.ServerName = "127.0.0.1"
		tc := tls.Client(mustDial(t, host), conf)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(tc, "GET /v2/keys/seed HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		slow = append(slow, tc)
	}
	if st, b, err := do(admin, "GET", lead+"/v2/keys/seed", "", nil); err != nil || st != 200 {
		t.Fatalf("admin during slowloris: %d %s %v", st, b, err)
	}
	for i, conn := range slow {
		// The server's ReadHeaderTimeout ends them; only the test binary's
		// timeout bounds this wait.
		b, _ := io.ReadAll(bufio.NewReader(conn))
		if bytes.Contains(b, []byte(" 200 ")) {
			t.Fatalf("slow connection %d was served: %q", i, b)
		}
		conn.Close()
	}

	after := c.state(admin)
	if after != before {
		t.Fatalf("hostile requests changed the cluster:\nbefore %+v\nafter  %+v", before, after)
	}
	if !strings.Contains(after.seed, `"value":"1"`) || !strings.Contains(after.units, "seed.service") || strings.Contains(after.units, "evil") || after.machines != "3" || !strings.HasPrefix(after.lock, "404") {
		t.Fatalf("unexpected state: %+v", after)
	}
}

func mustDial(t *testing.T, host string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSecureRealClients: etcd's v2 client and fleet's fleetctl with the
// admin certificate against the TLS cluster, and a renewed member
// certificate served without a restart.
func TestSecureRealClients(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pithd processes")
	}
	c := startSecureCluster(t, 3)
	tr := &http.Transport{TLSClientConfig: c.tlsConfig(c.dir, "admin")}
	var eps []string
	for _, m := range c.ms {
		eps = append(eps, m.client)
	}
	cl, err := etcd.New(etcd.Config{Endpoints: eps, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := cl.Sync(ctx); err != nil {
		t.Fatalf("etcd client sync over TLS: %v", err)
	}
	if got := cl.Endpoints(); len(got) != 3 || !strings.HasPrefix(got[0], "https://") {
		t.Fatalf("synced endpoints %v", got)
	}
	k := etcd.NewKeysAPI(cl)
	v0, err := k.Set(ctx, "/watched", "v0", nil)
	if err != nil {
		t.Fatalf("etcd client set: %v", err)
	}
	// A watch from v0's index sees the next write (the client starts the
	// request only on Next; AfterIndex 0 would mean "from then on").
	w := k.Watcher("/watched", &etcd.WatcherOptions{AfterIndex: v0.Node.ModifiedIndex})
	if _, err := k.Set(ctx, "/watched", "v1", nil); err != nil {
		t.Fatalf("etcd client set: %v", err)
	}
	if r, err := w.Next(ctx); err != nil || r.Node.Value != "v1" {
		t.Fatalf("etcd client watch: %+v %v", r, err)
	}
	if r, err := k.Get(ctx, "/watched", &etcd.GetOptions{Quorum: true}); err != nil || r.Node.Value != "v1" {
		t.Fatalf("etcd client quorum get: %+v %v", r, err)
	}
	if _, err := k.Set(ctx, "/cas", "a", &etcd.SetOptions{PrevExist: etcd.PrevNoExist}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Set(ctx, "/cas", "b", &etcd.SetOptions{PrevValue: "x"}); err == nil {
		t.Fatal("compare-and-swap with a wrong value succeeded")
	}
	if ms, err := etcd.NewMembersAPI(cl).List(ctx); err != nil || len(ms) != 3 {
		t.Fatalf("etcd members list: %v %v", ms, err)
	}
	// The reader's etcd client reads and is refused writes with the reason.
	rcl, _ := etcd.New(etcd.Config{Endpoints: eps, Transport: &http.Transport{TLSClientConfig: c.tlsConfig(c.dir, "reader")}})
	if _, err := etcd.NewKeysAPI(rcl).Get(ctx, "/watched", nil); err != nil {
		t.Fatalf("reader get: %v", err)
	}
	if _, err := etcd.NewKeysAPI(rcl).Set(ctx, "/watched", "x", nil); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("reader set: %v", err)
	}

	// fleet's fleetctl with --ca-file/--cert-file/--key-file.
	f := fleetctl{t: t, bin: fleetctlBinary(t), dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(f.dir, "hello.service"), []byte("[Service]\nExecStart=/usr/bin/sleep infinity\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	creds := []string{"--ca-file", filepath.Join(c.dir, "ca.crt"), "--cert-file", filepath.Join(c.dir, "admin.crt"), "--key-file", filepath.Join(c.dir, "admin.key")}
	fc := func(i int, args ...string) string {
		return f.ok(c.ms[i%3].client, append(append([]string(nil), creds...), args...)...)
	}
	if r := rows(fc(0, "list-machines", "--no-legend")); len(r) != 3 {
		t.Fatalf("fleetctl list-machines over TLS: %v", r)
	}
	fc(1, "submit", "hello.service")
	fc(2, "start", "hello.service")
	pithdtest.Poll(t, "hello.service running", func() (bool, string) {
		out, _, _ := f.run(c.ms[0].client, append(append([]string(nil), creds...), "list-units", "--no-legend", "--fields", "unit,active")...)
		return strings.Contains(out, "hello.service") && strings.Contains(out, "active"), out
	})
	fc(0, "destroy", "hello.service")
	if out := fc(1, "list-unit-files", "--no-legend"); strings.Contains(out, "hello.service") {
		t.Fatalf("destroyed unit still listed: %s", out)
	}
	// Without credentials fleetctl is refused.
	if _, _, ok := f.run(c.ms[0].client, "list-machines"); ok {
		t.Fatal("fleetctl without a certificate succeeded")
	}
	// The reader's fleetctl lists but cannot submit.
	rcreds := []string{"--ca-file", filepath.Join(c.dir, "ca.crt"), "--cert-file", filepath.Join(c.dir, "reader.crt"), "--key-file", filepath.Join(c.dir, "reader.key")}
	if _, _, ok := f.run(c.ms[0].client, append(rcreds, "list-machines")...); !ok {
		t.Fatal("reader's fleetctl list-machines failed")
	}
	if out, errs, ok := f.run(c.ms[0].client, append(rcreds, "submit", "hello.service")...); ok && !strings.Contains(out+errs, "forbidden") {
		t.Fatalf("reader's fleetctl submit: %s%s", out, errs)
	}
	if out := fc(1, "list-unit-files", "--no-legend"); strings.Contains(out, "hello.service") {
		t.Fatalf("the reader's submit went through: %s", out)
	}

	// Rotation: renew m0's certificate in place; new connections get the
	// new one, the member keeps running (same process, raft unaffected).
	serial := func() string {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(c.ms[0].client, "https://"), c.tlsConfig(c.dir, "admin"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	if err := c.ca.IssueMember(c.dir, "m0", nil); err != nil {
		t.Fatal(err)
	}
	// pithd notices the changed files on its next handshakes; the
	// operator's SIGHUP must not stop it (serial dials m0 itself).
	c.ms[0].proc.Signal(syscall.SIGHUP)
	pithdtest.Poll(t, "the renewed certificate served", func() (bool, string) {
		s := serial()
		return s != first, s
	})
	select {
	case <-c.ms[0].proc.Done():
		t.Fatal("the member exited after SIGHUP")
	default:
	}
	if _, err := k.Set(ctx, "/after-rotation", "ok", nil); err != nil {
		t.Fatalf("write after rotation: %v", err)
	}
	if r, err := k.Get(ctx, "/after-rotation", &etcd.GetOptions{Quorum: true}); err != nil || r.Node.Value != "ok" {
		t.Fatalf("read after rotation: %v %v", r, err)
	}
}
