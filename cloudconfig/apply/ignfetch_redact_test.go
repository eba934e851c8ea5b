package apply

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/pith-os/pith/cloudconfig"
)

// TestIgnitionFetchRedacts: credentials in a source URL (user:password@,
// query tokens) reach neither the log nor the error, while both still name
// the source.
func TestIgnitionFetchRedacts(t *testing.T) {
	var hits atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/flaky" && hits.Add(1) == 1 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		http.NotFound(w, r)
	}))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/x?sig=t0psecret", http.StatusFound)
	}))
	defer tlsSrv.Close()
	secrets := []string{"alice", "pw0rd", "t0psecret"}
	withCreds := func(base, path string) string {
		return strings.Replace(base, "://", "://alice:pw0rd@", 1) + path + "?token=t0psecret"
	}
	for _, tc := range []struct{ name, src, err string }{
		{"plain http, retried, then 404", withCreds(plain.URL, "/flaky"), "404"},
		{"https redirected to http", withCreds(tlsSrv.URL, "/c.ign"), "refusing the redirect"},
		{"unsupported scheme", "ftp://alice:pw0rd@h/c?token=t0psecret", "http and https sources only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, nil))
			f, err := newIgnFetcher(context.Background(), caConfig(tlsSrv), nil, log)
			if err != nil {
				t.Fatal(err)
			}
			src := tc.src
			_, err = f.fetch(context.Background(), igntypes.Resource{Source: &src})
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			out := err.Error() + "\n" + logs.String()
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("%q leaked:\n%s", s, out)
				}
			}
			if !strings.Contains(err.Error(), cloudconfig.RedactSource(src)) {
				t.Errorf("error does not name the source %s: %v", cloudconfig.RedactSource(src), err)
			}
		})
	}
}
