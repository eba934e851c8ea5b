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
)

// TestFirstBootIgnitionHash: `pithd firstboot` with Ignition configs whose
// files carry verification.hash, from a data: URL and over HTTP. A wrong
// hash fails the command with a message naming it, and nothing of the
// config is written; first boot is not recorded, so the next boot tries
// again.
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
		})
	}
}
