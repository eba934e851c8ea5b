package discovery

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// do sends one request to the service at base and returns its status,
// headers and body.
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

// TestDiscoveryStateSurvivesRestart creates a token and registrations,
// "restarts" the service from its state file, and checks that every token,
// registration and the index carried over.
func TestDiscoveryStateSurvivesRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "sub", "discovery.json")
	d, err := Open("http://disco.test", Options{StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	tokURL, err := d.NewToken(3)
	if err != nil {
		t.Fatal(err)
	}
	tokPath := strings.TrimPrefix(tokURL, "http://disco.test")
	ts := httptest.NewServer(d)
	for _, m := range []string{"a1", "b2"} {
		if code, _, body := do(t, ts.URL, "PUT", tokPath+"/"+m+"?prevExist=false", "value=n-"+m+"%3Dhttp%3A%2F%2F127.0.0.1%3A2380"); code != 201 {
			t.Fatalf("register %s: %d %s", m, code, body)
		}
	}
	_, h, before := do(t, ts.URL, "GET", tokPath+"?recursive=true&sorted=true", "")
	// While it runs, a second service on the same state file is refused.
	if _, err := Open("http://other", Options{StateFile: state}); err == nil || !strings.Contains(err.Error(), "in use by another") {
		t.Fatalf("second service on the same state: %v", err)
	}
	ts.Close()
	d.Close()

	d2, err := Open("http://disco.test", Options{StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	ts2 := httptest.NewServer(d2)
	defer ts2.Close()
	_, h2, after := do(t, ts2.URL, "GET", tokPath+"?recursive=true&sorted=true", "")
	if after != before || h2.Get("X-Etcd-Index") != h.Get("X-Etcd-Index") {
		t.Fatalf("after restart:\n%s (index %s)\nwant\n%s (index %s)", after, h2.Get("X-Etcd-Index"), before, h.Get("X-Etcd-Index"))
	}
	// Both members and the (hidden) size key are there; a third
	// registration continues the index instead of reusing one.
	for _, want := range []string{`/a1","value":"n-a1=http://127.0.0.1:2380"`, `/b2"`} {
		if !strings.Contains(after, want) {
			t.Errorf("restored state lacks %s: %s", want, after)
		}
	}
	if _, _, size := do(t, ts2.URL, "GET", tokPath+"/_config/size", ""); !strings.Contains(size, `"value":"3"`) {
		t.Errorf("size key after restart: %s", size)
	}
	code, h3, body := do(t, ts2.URL, "PUT", tokPath+"/c3?prevExist=false", "value=x")
	i1, _ := strconv.Atoi(h.Get("X-Etcd-Index"))
	i3, _ := strconv.Atoi(h3.Get("X-Etcd-Index"))
	if code != 201 || i3 <= i1 {
		t.Fatalf("register after restart: %d index %d (before restart %d) %s", code, i3, i1, body)
	}
	// Nothing but the state file is left in its directory (temp files
	// are renamed or removed).
	ents, _ := os.ReadDir(filepath.Dir(state))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "discovery.json discovery.json.lock" {
		t.Errorf("state dir holds %v, want only discovery.json and its lock", names)
	}
	// The state names every token, the only credential: owner only.
	for _, p := range []string{state, state + ".lock", filepath.Dir(state)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if st.IsDir() {
			want = 0o700
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}
}

func TestDiscoveryStateErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content, want string
	}{
		{"garbage", "{not json", "move it aside"},
		{"version", `{"version":9,"applied":1,"store":{}}`, "version 9"},
		{"bad store", `{"version":1,"applied":1,"store":{"version":1,"nodes":[{"p":"/a/b","c":1,"m":1}]}}`, "no parent directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name+".json")
			if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			d, err := Open("http://x", Options{StateFile: p})
			if err == nil {
				d.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open = %v, want an error with %q", err, c.want)
			}
			// The bad file is left as it was for the user to inspect.
			if b, _ := os.ReadFile(p); string(b) != c.content {
				t.Errorf("state file changed to %q", b)
			}
		})
	}
	// A missing file is an empty service, and memory-only leaves no file.
	d, err := Open("http://x", Options{StateFile: filepath.Join(dir, "none.json")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.json")); !os.IsNotExist(err) {
		t.Errorf("opening created the state file before any change: %v", err)
	}
	defer d.Close()
	if _, err := d.NewToken(1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.json")); err != nil {
		t.Errorf("state file not written after a change: %v", err)
	}
}
