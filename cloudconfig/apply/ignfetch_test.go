package apply

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/pith-os/pith/cloudconfig/apply/applytest"
)

// TestIgnitionRemoteSources applies configs whose files and merged or
// replacing configs come over https (a test CA) and plain HTTP, each
// hash checked. A failing case must leave the system untouched: the
// config's data: file, its unit and every fetched file absent.
func TestIgnitionRemoteSources(t *testing.T) {
	sum512 := func(s string) string { h := sha512.Sum512([]byte(s)); return "sha512-" + hex.EncodeToString(h[:]) }
	sum256 := func(s string) string { h := sha256.Sum256([]byte(s)); return "sha256-" + hex.EncodeToString(h[:]) }
	files := map[string]string{
		"/a":           "remote a\n",
		"/b":           "remote b\n",
		"/merge.ign":   `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/merged","contents":{"source":"data:,merged"}}]}}`,
		"/replace.ign": `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/replaced","contents":{"source":"data:,replaced"}}]}}`,
		"/bad.ign":     `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/usr/bin/x","contents":{"source":"data:,x"}}]}}`,
		"/loop.ign":    "", // set below: merges itself
		"/storage.ign": `{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[{"device":"/dev/vdb","format":"ext4","path":"/var/data"}]}}`,
		"/kargs.ign":   `{"ignition":{"version":"3.4.0"},"kernelArguments":{"shouldExist":["quiet"]}}`,
	}
	var fails atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/flaky" && fails.Add(1) == 1 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/auth" {
			if r.Header.Get("Authorization") != "Bearer t0ken" {
				http.Error(w, "no", http.StatusForbidden)
				return
			}
			w.Write([]byte("authorized\n"))
			return
		}
		if r.URL.Path == "/flaky" {
			w.Write([]byte("remote a\n"))
			return
		}
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(b))
	})
	tlsSrv := httptest.NewTLSServer(handler)
	defer tlsSrv.Close()
	plain := httptest.NewServer(handler)
	defer plain.Close()
	files["/loop.ign"] = `{"ignition":{"version":"3.4.0","config":{"merge":[{"source":"` + plain.URL + `/loop.ign"}]}}}`
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})
	ca := `"security":{"tls":{"certificateAuthorities":[{"source":"data:,` + url.PathEscape(string(caPEM)) + `"}]}}`
	hs, h := tlsSrv.URL, plain.URL

	for _, tc := range []struct {
		name     string
		ignition string // inside "ignition":{"version":"3.4.0", ...}
		files    string // storage.files entries after the data: one
		want     map[string]string
		err      string
	}{
		{name: "https with CA and sha512", ignition: ca,
			files: `{"path":"/etc/a","contents":{"source":"` + hs + `/a","verification":{"hash":"` + sum512("remote a\n") + `"}}}`,
			want:  map[string]string{"etc/a": "remote a\n"}},
		{name: "https append with sha256", ignition: ca,
			files: `{"path":"/etc/a","contents":{"source":"data:,x%0A"},"append":[{"source":"` + hs + `/b","verification":{"hash":"` + sum256("remote b\n") + `"}}]}`,
			want:  map[string]string{"etc/a": "x\nremote b\n"}},
		{name: "https wrong hash", ignition: ca,
			files: `{"path":"/etc/a","contents":{"source":"` + hs + `/a","verification":{"hash":"` + sum512("something else") + `"}}}`,
			err:   "wrong sha512 sum"},
		{name: "https wrong append hash", ignition: ca,
			files: `{"path":"/etc/a","append":[{"source":"` + hs + `/b","verification":{"hash":"` + sum256("x") + `"}}]}`,
			err:   "wrong sha256 sum"},
		{name: "https unknown CA",
			files: `{"path":"/etc/a","contents":{"source":"` + hs + `/a"}}`,
			err:   "certificateAuthorities"},
		{name: "plain http without hash works", files: `{"path":"/etc/a","contents":{"source":"` + h + `/a"}}`,
			want: map[string]string{"etc/a": "remote a\n"}},
		{name: "plain http wrong hash", files: `{"path":"/etc/a","contents":{"source":"` + h + `/a","verification":{"hash":"` + sum256("no") + `"}}}`,
			err: "wrong sha256 sum"},
		{name: "404", files: `{"path":"/etc/a","contents":{"source":"` + h + `/missing"}}`, err: "404"},
		{name: "5xx is retried", files: `{"path":"/etc/a","contents":{"source":"` + h + `/flaky"}}`,
			want: map[string]string{"etc/a": "remote a\n"}},
		{name: "http headers", files: `{"path":"/etc/a","contents":{"source":"` + h + `/auth","httpHeaders":[{"name":"Authorization","value":"Bearer t0ken"}]}}`,
			want: map[string]string{"etc/a": "authorized\n"}},
		{name: "merge", ignition: ca + `,"config":{"merge":[{"source":"` + hs + `/merge.ign","verification":{"hash":"` + sum512(files["/merge.ign"]) + `"}}]}`,
			want: map[string]string{"etc/merged": "merged"}},
		{name: "merge wrong hash", ignition: `"config":{"merge":[{"source":"` + h + `/merge.ign","verification":{"hash":"` + sum512("x") + `"}}]}`,
			err: "wrong sha512 sum"},
		{name: "merged config invalid", ignition: `"config":{"merge":[{"source":"` + h + `/bad.ign"}]}`,
			err: "read-only /usr"},
		{name: "merged storage", ignition: `"config":{"merge":[{"source":"` + h + `/storage.ign"}]}`,
			err: "applies storage only from the user-data's own config"},
		{name: "merged kernelArguments", ignition: `"config":{"merge":[{"source":"` + h + `/kargs.ign"}]}`,
			err: "has kernelArguments: Pith applies them only from the user-data's own config"},
		{name: "merge loop", ignition: `"config":{"merge":[{"source":"` + h + `/loop.ign"}]}`,
			err: "nested more than"},
		{name: "replace", ignition: `"config":{"replace":{"source":"` + h + `/replace.ign","verification":{"hash":"` + sum256(files["/replace.ign"]) + `"}}}`,
			want: map[string]string{"etc/replaced": "replaced", "etc/inline": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fails.Store(0)
			stage, rec, root := newStage(t)
			ign := `"version":"3.4.0"`
			if tc.ignition != "" {
				ign += "," + tc.ignition
			}
			fl := `{"path":"/etc/inline","contents":{"source":"data:,inline"}}`
			if tc.files != "" {
				fl += "," + tc.files
			}
			cfg := `{"ignition":{` + ign + `},"storage":{"files":[` + fl + `]},
			  "systemd":{"units":[{"name":"a.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}]}}`
			st, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(cfg)})
			if st != nil && !st.Valid {
				t.Fatalf("config rejected by validation: %v", err)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "nothing of this Ignition config was written") {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				for _, p := range []string{"etc/inline", "etc/a", "etc/merged", "etc/systemd/system/a.service"} {
					if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
						t.Errorf("failed config wrote %s", p)
					}
				}
				if len(rec.Calls) != 0 || st.Applied {
					t.Errorf("failed config applied: calls %v, state %+v", rec.Calls, st)
				}
				if done, _ := stage.FirstBootDone(); done {
					t.Error("first boot recorded as done after a failed config")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"etc/inline": "inline"}
			for k, v := range tc.want {
				want[k] = v
			}
			for p, content := range want {
				if content == "" { // replaced away
					if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
						t.Errorf("%s written, but its config was replaced", p)
					}
					continue
				}
				applytest.CheckFile(t, filepath.Join(root, p), 0o644, 0, content)
			}
		})
	}
}

func TestIgnitionProxy(t *testing.T) {
	hp, hsp := "http://proxy:3128", "http://sproxy:3128"
	p := igntypes.Proxy{HTTPProxy: &hp, HTTPSProxy: &hsp, NoProxy: []igntypes.NoProxyItem{"internal.example", ".corp", "10.0.0.1"}}
	proxy, err := proxyFunc(p)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"http://a.example/x":         hp,
		"https://a.example/x":        hsp,
		"https://internal.example/":  "",
		"https://a.internal.example": "",
		"http://x.corp/":             "",
		"http://10.0.0.1:8080/":      "",
		"http://10.0.0.10/":          hp,
	} {
		req, _ := http.NewRequest("GET", in, nil)
		u, err := proxy(req)
		got := ""
		if u != nil {
			got = u.String()
		}
		if err != nil || got != want {
			t.Errorf("%s: proxy %q, %v; want %q", in, got, err, want)
		}
	}
	bad := "not a url"
	if _, err := proxyFunc(igntypes.Proxy{HTTPSProxy: &bad}); err == nil {
		t.Error("bad proxy URL accepted")
	}
}
