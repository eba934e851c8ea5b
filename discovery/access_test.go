package discovery

import (
	"bytes"
	"context"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/agent/kv"
)

// discoveryDump is the whole store as its state file would hold it, and its
// index: what a refused request must leave exactly as it was.
func discoveryDump(t *testing.T, d *Service) string {
	t.Helper()
	var buf bytes.Buffer
	if err := d.store.Save(&buf); err != nil {
		t.Fatal(err)
	}
	idx, _ := d.local.RaftStatus()
	return buf.String() + "\napplied " + strconv.FormatUint(idx, 10)
}

// serve runs one request through d as a client at remote would send it.
func serve(d *Service, remote, method, target, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.RemoteAddr = remote
	if body != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	w := httptest.NewRecorder()
	d.ServeHTTP(w, r)
	return w
}

func tokenOf(t *testing.T, u string) string {
	t.Helper()
	i := strings.Index(u, RegistryPrefix+"/")
	if i < 0 {
		t.Fatalf("token URL %q has no %s", u, RegistryPrefix)
	}
	return u[i+len(RegistryPrefix)+1:]
}

// TestDiscoveryHostileCalls sends, with a token of its own (A), calls that
// try to reach another cluster's token (B), list the registry, overwrite
// or delete registrations, write the service's own keys, mint tokens from
// the network, or overload the service. Each must be refused with its
// status and reason, leak nothing of B, and leave the store as it was.
func TestDiscoveryHostileCalls(t *testing.T) {
	d, err := Open("http://disco.test", Options{MaxRegistrations: 2, NewFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	const local, remote = "127.0.0.1:5000", "192.0.2.7:5000"
	mint := func(size int) string {
		w := serve(d, local, "GET", "/new?size="+strconv.Itoa(size), "")
		if w.Code != 200 {
			t.Fatalf("/new: %d %s", w.Code, w.Body)
		}
		return tokenOf(t, strings.TrimSpace(w.Body.String()))
	}
	register := func(tok, id, value string) {
		w := serve(d, remote, "PUT", kv.KeysPrefix+RegistryPrefix+"/"+tok+"/"+id+"?prevExist=false", "value="+value)
		if w.Code != 201 {
			t.Fatalf("register %s/%s: %d %s", tok, id, w.Code, w.Body)
		}
	}
	a, b := mint(2), mint(2)
	register(a, "a1", "a1=http://10.0.0.1:2380")
	register(b, "b1", "b1=http://10.0.0.2:2380")
	register(b, "b2", "b2=http://10.0.0.3:2380")
	keys := kv.KeysPrefix + RegistryPrefix
	ta, tb := keys+"/"+a, keys+"/"+b
	unknown := strings.Repeat("0", 32)

	cases := []struct {
		name, method, target, body string
		remote                     string // default: a node on the network
		status                     int
		reason                     string
	}{
		{"list the key space", "GET", kv.KeysPrefix + "/?recursive=true", "", "", 403, "only keys inside a token"},
		{"list without slash", "GET", kv.KeysPrefix, "", "", 403, "only keys inside a token"},
		{"list _etcd", "GET", kv.KeysPrefix + "/_etcd?recursive=true", "", "", 403, "only keys inside a token"},
		{"list the registry", "GET", keys, "", "", 403, "only keys inside a token"},
		{"list the registry recursively", "GET", keys + "?recursive=true&sorted=true", "", "", 403, "only keys inside a token"},
		{"list the registry with a slash", "GET", keys + "/?recursive=true", "", "", 403, "not a discovery token"},
		{"watch the registry", "GET", keys + "?wait=true&recursive=true", "", "", 403, "only keys inside a token"},
		{"dot-dot from A to B", "GET", ta + "/../" + b, "", "", 403, "a token holds only"},
		{"encoded dot-dot from A to B", "GET", ta + "/%2e%2e/" + b, "", "", 403, "a token holds only"},
		{"encoded slash in the token", "GET", keys + "/" + a + "%2F..%2F" + b, "", "", 403, "a token holds only"},
		{"empty segment before B", "GET", keys + "//" + b, "", "", 403, "not a discovery token"},
		{"uppercase token", "GET", keys + "/" + strings.ToUpper(b), "", "", 403, "not a discovery token"},
		{"short token", "GET", keys + "/" + b[:16], "", "", 403, "not a discovery token"},
		{"unknown token", "GET", keys + "/" + unknown + "?recursive=true", "", "", 404, "token not found"},
		{"watch an unknown token", "GET", keys + "/" + unknown + "?wait=true&recursive=true", "", "", 404, "token not found"},
		{"register under an unknown token", "PUT", keys + "/" + unknown + "/x?prevExist=false", "value=x=http://h:2380", "", 404, "token not found"},
		{"key outside the registry", "PUT", kv.KeysPrefix + "/anything", "value=x", "", 403, "only keys inside a token"},
		{"overwrite B's registration", "PUT", tb + "/b1", "value=b1=http://6.6.6.6:2380", "", 403, "create-only"},
		{"overwrite with prevExist=true", "PUT", tb + "/b1?prevExist=true", "value=evil", "", 403, "create-only"},
		{"overwrite by compare-and-swap", "PUT", tb + "/b1?prevValue=b1%3Dhttp%3A%2F%2F10.0.0.2%3A2380", "value=evil", "", 403, "create-only"},
		{"create over B's registration", "PUT", tb + "/b1?prevExist=false", "value=evil", "", 412, "Key already exists"},
		{"delete B's registration", "DELETE", tb + "/b1", "", "", 403, "DELETE is not allowed"},
		{"delete B's token", "DELETE", tb + "?dir=true&recursive=true", "", "", 403, "DELETE is not allowed"},
		{"in-order key under A", "POST", ta, "value=x", "", 403, "POST is not allowed"},
		{"change A's size", "PUT", ta + "/_config/size", "value=100", "", 403, "only <token>/<member id> can be written"},
		{"write A's _config", "PUT", ta + "/_config?prevExist=false", "value=x", "", 403, "only <token>/<member id> can be written"},
		{"replace A's directory", "PUT", ta + "?dir=true", "", "", 403, "only <token>/<member id> can be written"},
		{"nested key under A", "PUT", ta + "/x/y?prevExist=false", "value=x", "", 403, "a token holds only"},
		{"hidden key under A", "PUT", ta + "/_x?prevExist=false", "value=x", "", 403, "a token holds only"},
		{"directory registration", "PUT", ta + "/d?prevExist=false&dir=true", "", "", 403, "create-only"},
		{"registration with a TTL", "PUT", ta + "/t?prevExist=false&ttl=1", "value=x", "", 403, "create-only"},
		{"empty registration", "PUT", ta + "/e?prevExist=false", "value=", "", 400, "needs a value"},
		{"id over 64 bytes", "PUT", ta + "/" + strings.Repeat("a", 65) + "?prevExist=false", "value=x", "", 403, "a token holds only"},
		{"value over 1 KiB", "PUT", ta + "/big?prevExist=false", "value=" + strings.Repeat("v", 1025), "", 400, "over the limit of 1024"},
		{"body over 4 KiB", "PUT", ta + "/big?prevExist=false", "value=" + strings.Repeat("v", 5000), "", 413, "over the limit of 4096 bytes"},
		{"body over 4 KiB on a read", "GET", ta, strings.Repeat("v", 5000), "", 413, "over the limit of 4096 bytes"},
		{"B over its registration limit", "PUT", tb + "/b3?prevExist=false", "value=b3=http://h:2380", "", 403, "already holds 2 registrations"},
		{"stream the token", "GET", ta + "?wait=true&stream=true", "", "", 403, "stream=true is not served"},
		{"mint a token from the network", "GET", "/new?size=3", "", "", 403, "tokens are created only from 127.0.0.0/8"},
		{"mint with POST", "POST", "/new?size=3", "", local, 405, "use GET"},
		{"mint a token over the size limit", "GET", "/new?size=3", "", local, 400, "must be between 1 and 2"},
		{"mint a token of size 0", "GET", "/new?size=0", "", local, 400, "must be between 1 and 2"},
		{"other API paths", "GET", "/v2/members", "", "", 404, "404 page not found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := discoveryDump(t, d)
			remoteAddr := c.remote
			if remoteAddr == "" {
				remoteAddr = remote
			}
			w := serve(d, remoteAddr, c.method, c.target, c.body)
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.reason) {
				t.Errorf("%s %s: %d %q, want %d with %q", c.method, c.target, w.Code, w.Body, c.status, c.reason)
			}
			if strings.Count(strings.TrimSpace(w.Body.String()), "\n") != 0 {
				t.Errorf("reason is not one line: %q", w.Body)
			}
			if c.method != "GET" || !strings.Contains(c.target, b) {
				if strings.Contains(w.Body.String(), "10.0.0.2") || strings.Contains(w.Body.String(), "10.0.0.3") {
					t.Errorf("answer leaks B's registrations: %s", w.Body)
				}
			}
			if after := discoveryDump(t, d); after != before {
				t.Errorf("state changed:\n%s\nwas\n%s", after, before)
			}
		})
	}

	// What the protocol needs still works: read A, the size, a member,
	// and register a second member.
	for _, target := range []string{ta + "?recursive=true", ta + "/_config/size", ta + "/a1", tb} {
		if w := serve(d, remote, "GET", target, ""); w.Code != 200 {
			t.Errorf("GET %s: %d %s", target, w.Code, w.Body)
		}
	}
	register(a, "a2", "a2=http://10.0.0.4:2380")
	w := serve(d, remote, "GET", ta, "")
	if !strings.Contains(w.Body.String(), "/a1") || !strings.Contains(w.Body.String(), "/a2") || strings.Contains(w.Body.String(), b) {
		t.Errorf("A after registering a2: %s", w.Body)
	}
}

// TestDiscoveryTokenLimits: at most MaxTokens live tokens; /new answers 503
// beyond, and a token that expires makes room again.
func TestDiscoveryTokenLimits(t *testing.T) {
	d, err := Open("http://disco.test", Options{MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if w := serve(d, "[::1]:1", "GET", "/new?size=1", ""); w.Code != 200 {
			t.Fatalf("token %d: %d %s", i, w.Code, w.Body)
		}
	}
	before := discoveryDump(t, d)
	if w := serve(d, "[::1]:1", "GET", "/new?size=1", ""); w.Code != 503 || !strings.Contains(w.Body.String(), "too many live discovery tokens") {
		t.Fatalf("third token: %d %s", w.Code, w.Body)
	}
	if after := discoveryDump(t, d); after != before {
		t.Fatalf("a refused /new changed the state:\n%s", after)
	}
	expireAll(t, d)
	if w := serve(d, "[::1]:1", "GET", "/new?size=1", ""); w.Code != 200 {
		t.Fatalf("token after the others expired: %d %s", w.Code, w.Body)
	}
}

// expireAll runs the expiry loop with a clock past every token's TTL until
// the registry is empty.
func expireAll(t *testing.T, d *Service) {
	t.Helper()
	d.server.SetClock(func() time.Time { return time.Now().Add(d.opt.TokenTTL + time.Hour) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	for d.countChildren(RegistryPrefix) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	d.server.SetClock(time.Now)
}

// TestDiscoveryTokenExpiry: a token and its registrations vanish after
// TokenTTL; after that the token is unknown to reads and registrations
// alike (it does not come back as a directory without a TTL).
func TestDiscoveryTokenExpiry(t *testing.T) {
	d, err := Open("http://disco.test", Options{TokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	u, err := d.NewToken(1)
	if err != nil {
		t.Fatal(err)
	}
	tok := kv.KeysPrefix + RegistryPrefix + "/" + tokenOf(t, u)
	if w := serve(d, "127.0.0.1:1", "PUT", tok+"/m1?prevExist=false", "value=m1=http://h:2380"); w.Code != 201 {
		t.Fatalf("register: %d %s", w.Code, w.Body)
	}
	w := serve(d, "127.0.0.1:1", "GET", tok, "")
	if !strings.Contains(w.Body.String(), `"ttl":3600`) && !strings.Contains(w.Body.String(), `"ttl":3599`) {
		t.Fatalf("token without its TTL: %s", w.Body)
	}
	expireAll(t, d)
	for _, c := range []struct{ method, target, body string }{
		{"GET", tok, ""}, {"GET", tok + "/m1", ""}, {"PUT", tok + "/m2?prevExist=false", "value=m2=http://h:2380"},
	} {
		if w := serve(d, "127.0.0.1:1", c.method, c.target, c.body); w.Code != 404 || !strings.Contains(w.Body.String(), "token not found") {
			t.Errorf("%s %s after expiry: %d %s", c.method, c.target, w.Code, w.Body)
		}
	}
	if n := d.countChildren(RegistryPrefix); n != 0 {
		t.Errorf("%d tokens after expiry", n)
	}
}

// TestDiscoveryOldStateGetsTTL: a state file written before tokens expired
// holds tokens without a TTL; opening it gives them TokenTTL from now.
func TestDiscoveryOldStateGetsTTL(t *testing.T) {
	state := filepath.Join(t.TempDir(), "discovery.json")
	d, err := Open("http://x", Options{StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	old := RegistryPrefix + "/" + strings.Repeat("ab", 16)
	d.mu.Lock()
	_, _, err = d.propose(kv.Command{Op: kv.OpCreate, Path: old + "/_config/size", Value: "3"})
	d.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := os.Stat(state); err != nil {
		t.Fatal(err)
	}
	d2, err := Open("http://x", Options{StateFile: state, TokenTTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	ev, err := d2.store.Get(old, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Node.TTL < 7100 || ev.Node.TTL > 7200 {
		t.Fatalf("old token's TTL after open: %d s, want about 7200", ev.Node.TTL)
	}
}
