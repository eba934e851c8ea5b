package apply

import (
	"context"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/pith-os/pith/cloudconfig"
)

// caConfig returns a config trusting srv's certificate (a data: URL CA).
func caConfig(srv *httptest.Server) *cloudconfig.IgnitionConfig {
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	src := "data:," + url.PathEscape(string(caPEM))
	var c cloudconfig.IgnitionConfig
	c.Ignition.Security.TLS.CertificateAuthorities = []igntypes.Resource{{Source: &src}}
	return &c
}

// TestIgnitionRedirect: an https source redirected to plain http is
// refused before the plain server sees the request (or its headers); a
// redirect that stays on https is followed.
func TestIgnitionRedirect(t *testing.T) {
	var plainHits atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
		w.Write([]byte("downgraded\n"))
	}))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-http":
			http.Redirect(w, r, plain.URL+"/a", http.StatusFound)
		case "/to-https":
			http.Redirect(w, r, "/a", http.StatusFound)
		case "/a":
			w.Write([]byte("secure\n"))
		}
	}))
	defer tlsSrv.Close()
	f, err := newIgnFetcher(context.Background(), caConfig(tlsSrv), nil, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	secret := "Bearer s3cret"
	for _, tc := range []struct{ path, want, err string }{
		{path: "/to-https", want: "secure\n"},
		{path: "/to-http", err: "refusing the redirect from https to http"},
	} {
		src := tlsSrv.URL + tc.path
		data, err := f.fetch(context.Background(), igntypes.Resource{Source: &src,
			HTTPHeaders: igntypes.HTTPHeaders{{Name: "Authorization", Value: &secret}}})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.path, err, tc.err)
			}
			continue
		}
		if err != nil || string(data) != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.path, data, err, tc.want)
		}
	}
	if n := plainHits.Load(); n != 0 {
		t.Errorf("the plain http server got %d requests after a redirect from https", n)
	}
}
