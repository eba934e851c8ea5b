package update

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/rebootlock"
)

func TestLockHTTP(t *testing.T) {
	kv := newMemKV()
	mux := http.NewServeMux()
	RegisterLockHTTP(mux, kv)
	ts := httptest.NewServer(mux)
	defer ts.Close()
	sem := &rebootlock.Semaphore{KV: kv}
	if err := sem.Lock(context.Background(), "m1"); err != nil {
		t.Fatal(err)
	}
	call := func(method, path string) (int, map[string]any) {
		req, _ := http.NewRequest(method, ts.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v
	}
	if code, v := call("GET", "/pith/v1/locks"); code != 200 || v["max"].(float64) != 1 || v["holders"].([]any)[0] != "m1" {
		t.Fatalf("status %d %v", code, v)
	}
	if code, v := call("POST", "/pith/v1/locks/max?n=3"); code != 200 || v["old"].(float64) != 1 {
		t.Fatalf("set-max %d %v", code, v)
	}
	if code, _ := call("POST", "/pith/v1/locks/unlock?machine=m9"); code != 404 {
		t.Fatalf("unlock of a non-holder: %d", code)
	}
	if code, _ := call("POST", "/pith/v1/locks/unlock?machine=m1"); code != 200 {
		t.Fatalf("unlock: %d", code)
	}
	if code, v := call("GET", "/pith/v1/locks"); code != 200 || v["semaphore"].(float64) != 3 {
		t.Fatalf("after unlock %d %v", code, v)
	}
	if code, _ := call("POST", "/pith/v1/locks/max?n=-1"); code != 400 {
		t.Fatalf("negative max: %d", code)
	}
}

func TestCommandRebooter(t *testing.T) {
	out := filepath.Join(t.TempDir(), "reason")
	r := &CommandRebooter{Argv: []string{"sh", "-c", `printf %s "$PITH_UPDATE_REASON" > ` + out}}
	if err := r.Reboot(context.Background(), "update to 1.2.0"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "update to 1.2.0" {
		t.Fatalf("hook saw %q", b)
	}
	err := (&CommandRebooter{Argv: []string{"sh", "-c", "echo no way >&2; exit 3"}}).Reboot(context.Background(), "x")
	if err == nil || !strings.Contains(err.Error(), "no way") {
		t.Fatalf("failing hook: %v", err)
	}
}
