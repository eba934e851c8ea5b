package daemon

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// With a cluster CA the reboot lock reaches the KV through root's unix
// socket (a member certificate has no client route); without one, the
// advertised client URL; a CA without a socket has no lock.
func TestLockKV(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hits := make(chan string, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- r.Method + " " + r.URL.Path
		w.Header().Set("X-Etcd-Index", "7")
		w.Write([]byte(`{"action":"get","node":{"key":"/lock","value":"v","modifiedIndex":7,"createdIndex":7}}`))
	})}
	go srv.Serve(ln)
	defer srv.Close()

	secure := KVConfig{UnixSocket: sock, AdvertiseClientURLs: []string{"https://10.0.0.1:2379"}}
	secure.ClientTLS.TrustedCAFile = "/etc/pith/tls/ca.crt"
	kv, err := lockKV(&secure)
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := kv.Get(context.Background(), "/lock"); err != nil || v != "v" {
		t.Fatalf("Get through the socket: %q %v", v, err)
	}
	if got := <-hits; got != "GET /v2/keys/lock" {
		t.Errorf("socket saw %q", got)
	}

	noSock := secure
	noSock.UnixSocket = ""
	if _, err := lockKV(&noSock); err == nil || !strings.Contains(err.Error(), "--unix-socket") {
		t.Errorf("CA without a socket: %v, want an error naming --unix-socket", err)
	}
	if _, err := lockKV(&KVConfig{AdvertiseClientURLs: []string{"http://127.0.0.1:2379"}}); err != nil {
		t.Errorf("no CA: %v", err)
	}
}
