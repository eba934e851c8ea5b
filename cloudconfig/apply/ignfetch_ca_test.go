package apply

import (
	"context"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/pith-os/pith/cloudconfig"
)

// TestIgnitionCAFetch: certificateAuthorities are fetched with the
// config's own ignition.proxy, and a merged config's CAs may be served
// over https by a server the config it is merged onto trusts.
func TestIgnitionCAFetch(t *testing.T) {
	var tlsSrv *httptest.Server
	caPEM := func() []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})
	}
	// The origin refuses everything: only the proxy serves the CA.
	origin := httptest.NewServer(http.NotFoundHandler())
	defer origin.Close()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Host == "" || r.URL.Path != "/ca.pem" { // a proxy request carries the absolute URL
			http.NotFound(w, r)
			return
		}
		w.Write(caPEM())
	}))
	defer proxy.Close()
	tlsSrv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ca.pem":
			w.Write(caPEM())
		case "/merge.ign":
			w.Write([]byte(`{"ignition":{"version":"3.4.0","security":{"tls":{"certificateAuthorities":[{"source":"` + tlsSrv.URL + `/ca.pem"}]}}},
			  "storage":{"files":[{"path":"/etc/m","contents":{"source":"` + tlsSrv.URL + `/file"}}]}}`))
		case "/file":
			w.Write([]byte("over https\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer tlsSrv.Close()
	dataCA := `{"source":"data:,` + url.PathEscape(string(caPEM())) + `"}`

	for _, tc := range []struct{ name, ignition string }{
		{"CA through ignition.proxy", `"proxy":{"httpProxy":"` + proxy.URL + `"},"security":{"tls":{"certificateAuthorities":[{"source":"` + origin.URL + `/ca.pem"}]}}`},
		{"merged config's CA over https", `"security":{"tls":{"certificateAuthorities":[` + dataCA + `]}},"config":{"merge":[{"source":"` + tlsSrv.URL + `/merge.ign"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rep := cloudconfig.ParseIgnition([]byte(`{"ignition":{"version":"3.4.0",` + tc.ignition + `}}`))
			if c == nil || rep.HasErrors() {
				t.Fatal(rep.Format("config"))
			}
			a := &Applier{Log: slog.New(slog.NewTextHandler(t.Output(), nil))}
			_, f, err := a.renderIgnition(context.Background(), *c, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			src := tlsSrv.URL + "/file"
			data, err := f.fetch(context.Background(), igntypes.Resource{Source: &src})
			if err != nil || !strings.Contains(string(data), "over https") {
				t.Errorf("fetch with the config's CAs: %q, %v", data, err)
			}
		})
	}
}
