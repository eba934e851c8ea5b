package kv

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	etcd "go.etcd.io/etcd/client/v2"
)

func newTestServer(t *testing.T, lim Limits) (*httptest.Server, *Server) {
	t.Helper()
	st := NewStore(Options{MaxWatchers: 4})
	s := NewServer(st, NewLocal(st), lim)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts, s
}

func do(t *testing.T, base, method, path, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestKeysHTTP checks status, headers and bodies of raw HTTP requests, in
// order, against etcd v2's wire format.
func TestKeysHTTP(t *testing.T) {
	ts, _ := newTestServer(t, Limits{MaxValueBytes: 16, MaxKeyBytes: 64, MaxBodyBytes: 256})
	steps := []struct {
		method, path, body string
		status             int
		etcdIndex          string
		want               string // exact body, or prefix ending in "*"
	}{
		{"PUT", "/v2/keys/message", "value=Hello+world", 201, "1", `{"action":"set","node":{"key":"/message","value":"Hello world","modifiedIndex":1,"createdIndex":1}}`},
		{"GET", "/v2/keys/message", "", 200, "1", `{"action":"get","node":{"key":"/message","value":"Hello world","modifiedIndex":1,"createdIndex":1}}`},
		{"PUT", "/v2/keys/message?value=Hi", "", 200, "2", `{"action":"set","node":{"key":"/message","value":"Hi","modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/message","value":"Hello world","modifiedIndex":1,"createdIndex":1}}`},
		{"GET", "/v2/keys/nope", "", 404, "2", `{"errorCode":100,"message":"Key not found","cause":"/nope","index":2}`},
		{"PUT", "/v2/keys/message?prevExist=false", "value=x", 412, "2", `{"errorCode":105,"message":"Key already exists","cause":"/message","index":2}`},
		{"PUT", "/v2/keys/message?prevValue=nope", "value=x", 412, "2", `{"errorCode":101,"message":"Compare failed","cause":"[nope != Hi]","index":2}`},
		{"PUT", "/v2/keys/message?prevIndex=2", "value=y", 200, "3", `{"action":"compareAndSwap",*`},
		{"PUT", "/v2/keys/message?prevExist=true", "value=z", 200, "4", `{"action":"update","node":{"key":"/message","value":"z","modifiedIndex":4,"createdIndex":2},*`},
		{"PUT", "/v2/keys/message?prevValue=", "value=z", 400, "0", `{"errorCode":201,"message":"PrevValue is Required in POST form","cause":"\"prevValue\" cannot be empty","index":0}`},
		{"PUT", "/v2/keys/t?ttl=abc", "value=1", 400, "0", `{"errorCode":202,"message":"The given TTL in POST form is not a number","cause":"invalid value for \"ttl\"","index":0}`},
		{"PUT", "/v2/keys/t?prevIndex=-1", "value=1", 400, "0", `{"errorCode":203,"message":"The given index in POST form is not a number","cause":"invalid value for \"prevIndex\"","index":0}`},
		{"GET", "/v2/keys/t?waitIndex=x&wait=true", "", 400, "0", `{"errorCode":203,*`},
		{"GET", "/v2/keys/t?recursive=maybe", "", 400, "0", `{"errorCode":209,"message":"Invalid field","cause":"invalid value for \"recursive\"","index":0}`},
		{"PUT", "/v2/keys/t?wait=true", "value=1", 400, "0", `{"errorCode":209,"message":"Invalid field","cause":"\"wait\" can only be used with GET requests","index":0}`},
		{"PUT", "/v2/keys/t?refresh=true", "", 400, "0", `{"errorCode":212,"message":"A TTL must be provided on refresh","cause":"No TTL value set","index":0}`},
		{"PUT", "/v2/keys/t?refresh=true&ttl=5", "value=v", 400, "0", `{"errorCode":211,*`},
		{"PUT", "/v2/keys/t?prevExist=yes", "value=v", 400, "0", `{"errorCode":209,"message":"Invalid field","cause":"invalid value for prevExist","index":0}`},
		{"PUT", "/v2/keys/big", "value=01234567890123456789", 400, "0", `{"errorCode":209,"message":"Invalid field","cause":"value is 20 bytes, over the limit of 16","index":0}`},
		{"PUT", "/v2/keys/" + strings.Repeat("k", 70), "value=v", 400, "0", `{"errorCode":209,*`},
		{"PUT", "/v2/keys/a", "value=" + strings.Repeat("v", 300), 400, "0", `{"errorCode":210,*`},
		{"PUT", "/v2/keys/a/%2E%2E/b", "value=v", 400, "0", `{"errorCode":209,"message":"Invalid field","cause":"key \"/a/../b\" contains a \"..\" segment","index":0}`},
		{"PUT", "/v2/keys/a%00b", "value=v", 400, "0", `{"errorCode":209,*`},
		{"GET", "/v2/keys/big", "", 404, "4", `{"errorCode":100,*`},
		{"PUT", "/v2/keys/", "value=v", 400, "4", `{"errorCode":107,"message":"Root is read only","cause":"/","index":4}`},
		{"PUT", "/v2/keys/dir?dir=true", "", 201, "5", `{"action":"set","node":{"key":"/dir","dir":true,"modifiedIndex":5,"createdIndex":5}}`},
		{"POST", "/v2/keys/dir", "value=job1", 201, "6", `{"action":"create","node":{"key":"/dir/00000000000000000006","value":"job1","modifiedIndex":6,"createdIndex":6}}`},
		{"DELETE", "/v2/keys/dir", "", 403, "6", `{"errorCode":102,"message":"Not a file","cause":"/dir","index":6}`},
		{"DELETE", "/v2/keys/dir?dir=true", "", 403, "6", `{"errorCode":108,"message":"Directory not empty","cause":"/dir","index":6}`},
		{"DELETE", "/v2/keys/message?prevValue=z", "", 200, "7", `{"action":"compareAndDelete","node":{"key":"/message","modifiedIndex":7,"createdIndex":2},"prevNode":{"key":"/message","value":"z","modifiedIndex":4,"createdIndex":2}}`},
		{"DELETE", "/v2/keys/dir?recursive=true", "", 200, "8", `{"action":"delete","node":{"key":"/dir","dir":true,"modifiedIndex":8,"createdIndex":5},*`},
		{"PUT", "/v2/keys/nv?noValueOnSuccess=true", "value=v", 201, "9", `{"action":"set"}`},
		{"GET", "/v2/keys/", "", 200, "9", `{"action":"get","node":{"dir":true,"nodes":[{"key":"/nv","value":"v","modifiedIndex":9,"createdIndex":9}]}}`},
		{"PATCH", "/v2/keys/nv", "", 405, "", "Method Not Allowed"},
		{"GET", "/v2/keys/nv?quorum=true", "", 200, "9", `{"action":"get",*`},
		{"GET", "/v2/keys/nv?wait=true&waitIndex=9", "", 200, "9", `{"action":"set","node":{"key":"/nv","value":"v","modifiedIndex":9,"createdIndex":9}}`},
	}
	for i, st := range steps {
		status, h, body := do(t, ts.URL, st.method, st.path, st.body)
		body = strings.TrimSuffix(body, "\n")
		ok := body == st.want
		if strings.HasSuffix(st.want, "*") {
			ok = strings.HasPrefix(body, strings.TrimSuffix(st.want, "*"))
		}
		if status != st.status || !ok || h.Get("X-Etcd-Index") != st.etcdIndex {
			t.Fatalf("step %d %s %s: %d X-Etcd-Index=%q %s\nwant %d X-Etcd-Index=%q %s", i, st.method, st.path, status, h.Get("X-Etcd-Index"), body, st.status, st.etcdIndex, st.want)
		}
		if st.status < 300 && (h.Get("X-Raft-Index") == "" || h.Get("X-Raft-Term") == "" || h.Get("X-Etcd-Cluster-ID") == "") {
			t.Fatalf("step %d: missing raft headers: %v", i, h)
		}
	}
}

func TestWatchHTTP(t *testing.T) {
	ts, s := newTestServer(t, Limits{})
	// Long poll: the response arrives once the key changes.
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get(ts.URL + "/v2/keys/w?wait=true")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- resp.Header.Get("X-Etcd-Index") + " " + strings.TrimSpace(string(b))
	}()
	waitWatchers(t, s, 1)
	do(t, ts.URL, "PUT", "/v2/keys/w", "value=1")
	if g := <-got; g != `0 {"action":"set","node":{"key":"/w","value":"1","modifiedIndex":1,"createdIndex":1}}` {
		t.Fatalf("watch got %s", g)
	}
	// Streaming recursive watch gets several events on one response.
	resp, err := http.Get(ts.URL + "/v2/keys/d?wait=true&recursive=true&stream=true")
	if err != nil {
		t.Fatal(err)
	}
	waitWatchers(t, s, 1)
	do(t, ts.URL, "PUT", "/v2/keys/d/a", "value=1")
	do(t, ts.URL, "PUT", "/v2/keys/d/b", "value=2")
	dec := json.NewDecoder(resp.Body)
	for _, want := range []string{"/d/a", "/d/b"} {
		var ev Event
		if err := dec.Decode(&ev); err != nil || ev.Node.Key != want {
			t.Fatalf("stream event %+v %v, want %s", ev.Node, err, want)
		}
	}
	resp.Body.Close()
	// The server notices the closed connection and drops the watcher.
	waitWatchers(t, s, 0)
	// Event index cleared.
	for i := 0; i < DefaultHistorySize+5; i++ {
		s.store.Set("/spin", false, "x", 0, false)
	}
	status, _, body := do(t, ts.URL, "GET", "/v2/keys/spin?wait=true&waitIndex=1", "")
	if status != 400 || !strings.Contains(body, `"errorCode":401`) || !strings.Contains(body, "the requested history has been cleared [9/1]") {
		t.Fatalf("cleared history: %d %s", status, body)
	}
}

// waitWatchers polls until the store has n watchers. Only the test
// binary's -timeout bounds it: a fixed count of sleeps is a wall-clock
// limit that fails on a loaded machine.
func waitWatchers(t *testing.T, s *Server, n int64) {
	t.Helper()
	for i := 0; s.store.hub.count.Load() != n; i++ {
		if i == 2000 {
			t.Logf("still waiting: %d watchers, want %d", s.store.hub.count.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatcherBoundHTTP(t *testing.T) {
	ts, s := newTestServer(t, Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 4; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v2/keys/x?wait=true", nil)
		go func() {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	waitWatchers(t, s, 4)
	status, _, body := do(t, ts.URL, "GET", "/v2/keys/x?wait=true", "")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "too many watchers") {
		t.Fatalf("fifth watcher: %d %s", status, body)
	}
}

// TestEtcdClientV2 drives the server with etcd's own Go client.
func TestEtcdClientV2(t *testing.T) {
	ts, _ := newTestServer(t, Limits{})
	c, err := etcd.New(etcd.Config{Endpoints: []string{ts.URL}, Transport: etcd.DefaultTransport})
	if err != nil {
		t.Fatal(err)
	}
	kapi := etcd.NewKeysAPI(c)
	ctx := context.Background()
	r, err := kapi.Set(ctx, "/foo", "bar", nil)
	if err != nil || r.Action != "set" || r.Node.Value != "bar" || r.Index != 1 {
		t.Fatalf("set: %+v %v", r, err)
	}
	_, err = kapi.Set(ctx, "/foo", "x", &etcd.SetOptions{PrevExist: etcd.PrevNoExist})
	var ce etcd.Error
	if !errors.As(err, &ce) || ce.Code != etcd.ErrorCodeNodeExist || ce.Index != 1 {
		t.Fatalf("create existing: %v", err)
	}
	if _, err := kapi.Set(ctx, "/foo", "baz", &etcd.SetOptions{PrevValue: "bar", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	r, err = kapi.Get(ctx, "/foo", &etcd.GetOptions{Quorum: true})
	if err != nil || r.Node.Value != "baz" || r.Node.TTL <= 0 || r.Node.Expiration == nil {
		t.Fatalf("get: %+v %v", r, err)
	}
	if _, err := kapi.Set(ctx, "/foo", "", &etcd.SetOptions{Refresh: true, TTL: 2 * time.Hour, PrevExist: etcd.PrevExist}); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if _, err := kapi.CreateInOrder(ctx, "/q", "1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kapi.CreateInOrder(ctx, "/q", "2", nil); err != nil {
		t.Fatal(err)
	}
	r, err = kapi.Get(ctx, "/q", &etcd.GetOptions{Sort: true, Recursive: true})
	if err != nil || len(r.Node.Nodes) != 2 || r.Node.Nodes[0].Value != "1" || r.Node.Nodes[1].Value != "2" {
		t.Fatalf("in order: %+v %v", r, err)
	}
	_, err = kapi.Get(ctx, "/missing", nil)
	if !etcd.IsKeyNotFound(err) {
		t.Fatalf("missing: %v", err)
	}
	w := kapi.Watcher("/q", &etcd.WatcherOptions{Recursive: true, AfterIndex: r.Index})
	done := make(chan *etcd.Response, 1)
	go func() {
		resp, err := w.Next(ctx)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	if _, err := kapi.Delete(ctx, "/q", &etcd.DeleteOptions{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if ev := <-done; ev == nil || ev.Action != "delete" || ev.Node.Key != "/q" {
		t.Fatalf("watch: %+v", ev)
	}
	if _, err := kapi.Delete(ctx, "/foo", &etcd.DeleteOptions{PrevValue: "nope"}); err == nil {
		t.Fatal("compare-and-delete with a wrong value succeeded")
	}
	if _, err := kapi.Update(ctx, "/foo", "u"); err != nil {
		t.Fatal(err)
	}
	if r, err := kapi.Get(ctx, "/foo", nil); err != nil || r.Node.TTL != 0 {
		t.Fatalf("update without ttl keeps ttl: %+v %v", r.Node, err)
	}
}

func TestParseNoPanicSeeds(t *testing.T) {
	for _, q := range []string{"", "ttl=", "ttl=99999999999999999999", "prevExist", "refresh=1&ttl=1", "waitIndex=18446744073709551615"} {
		form, _ := url.ParseQuery(q)
		for _, m := range []string{"GET", "PUT", "POST", "DELETE"} {
			rr, err := ParseKeyRequest(m, "/v2/keys/x", form, Limits{})
			if (rr == nil) == (err == nil) {
				t.Fatalf("%s %q: request %v error %v", m, q, rr, err)
			}
		}
	}
}

// oldLeader is a member whose leader takes no commands from followers.
type oldLeader struct {
	*Local
	forwarded []string
}

func (o *oldLeader) Propose(context.Context, []byte) (any, uint64, error) {
	return nil, 0, ErrForward
}

func (o *oldLeader) Forward(w http.ResponseWriter, r *http.Request, body []byte) error {
	o.forwarded = append(o.forwarded, r.Method+" "+r.URL.Path+" "+string(body))
	w.WriteHeader(http.StatusCreated)
	return nil
}

// TestWriteForwardedToOldLeader: when the leader takes no commands, a
// write is forwarded whole, with its body.
func TestWriteForwardedToOldLeader(t *testing.T) {
	st := NewStore(Options{})
	r := &oldLeader{Local: NewLocal(st)}
	ts := httptest.NewServer(NewServer(st, r, Limits{}))
	defer ts.Close()
	if status, _, body := do(t, ts.URL, "PUT", "/v2/keys/k", "value=v"); status != http.StatusCreated {
		t.Fatalf("write: %d %s", status, body)
	}
	if len(r.forwarded) != 1 || r.forwarded[0] != "PUT /v2/keys/k value=v" {
		t.Fatalf("forwarded: %q", r.forwarded)
	}
}
