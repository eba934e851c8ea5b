package main

import (
	"crypto/sha512"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig/apply"
)

// TestFirstBootIgnitionHash: `pithd firstboot` with Ignition configs whose
// files carry verification.hash, from a data: URL and over HTTP. A wrong
// hash fails the command with a message naming it, and nothing of the
// config is written; first boot is not recorded, so the next boot tries
// again. Only a boot's run says the boot stops (and records it), not --now.
func TestFirstBootIgnitionHash(t *testing.T) {
	const body = "fetched\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }))
	defer srv.Close()
	sum := func(s string) string { return fmt.Sprintf("sha512-%x", sha512.Sum512([]byte(s))) }
	for _, tc := range []struct {
		name, source, hash string
		want               string // in the output on failure; "" = applied
	}{
		{"data ok", "data:,fetched%0A", sum(body), ""},
		{"data wrong", "data:,fetched%0A", sum("other"), "contents have the wrong sha512 sum"},
		{"http ok", srv.URL + "/f", sum(body), ""},
		{"http wrong", srv.URL + "/f", sum("other"), "not applied, nothing of this Ignition config was written"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := accountRoot(t)
			cfg := `{"ignition":{"version":"3.4.0"},"storage":{"files":[
			  {"path":"/etc/first","contents":{"source":"data:,first"}},
			  {"path":"/etc/checked","contents":{"source":"` + tc.source + `","verification":{"hash":"` + tc.hash + `"}}}]}}`
			out, err := runFirstBootCmd(t, root, cfg)
			done := filepath.Join(root, "var/lib/pith/first-boot.done")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				if b, _ := os.ReadFile(filepath.Join(root, "etc/checked")); string(b) != body {
					t.Errorf("/etc/checked = %q\n%s", b, out)
				}
				if _, err := os.Stat(done); err != nil {
					t.Errorf("first boot not recorded: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(out+err.Error(), tc.want) || !strings.Contains(out+err.Error(), "wrong sha512 sum") {
				t.Fatalf("err %v, output:\n%s\nwant %q", err, out, tc.want)
			}
			for _, p := range []string{"etc/first", "etc/checked", "var/lib/pith/first-boot.done"} {
				if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
					t.Errorf("%s exists after a failed config", p)
				}
			}
			// A boot's run would stop the boot; without systemd it says
			// it cannot, and records the line for pithctl userdata.
			const stop = "pithd firstboot: systemd is not reachable, so the boot is not stopped as Ignition's would be: the Ignition config from file was not applied ("
			if stops, _ := apply.ReadBootsStopped(root); !strings.Contains(out, "\n"+stop) || len(stops) != 1 || !strings.Contains(stops[0], stop) {
				t.Errorf("no stop line, or not recorded (%q):\n%s", stops, out)
			}
			// An operator's --now run of it fails alike, and neither stops
			// nor records a stopped boot.
			root = accountRoot(t)
			ud := filepath.Join(t.TempDir(), "user-data")
			os.WriteFile(ud, []byte(cfg), 0o644)
			out, err = runFirstBootNow(t, "--now", "--root", root, "--from-file", ud, "--no-units", "--metadata-url", "http://127.0.0.1:1", "--config-drive", "")
			if stops, _ := apply.ReadBootsStopped(root); err == nil || !strings.Contains(out, "wrong sha512 sum") || strings.Contains(out, "the boot") || stops != nil {
				t.Errorf("--now: err %v, stopped boots %q, output:\n%s", err, stops, out)
			}
		})
	}
}
