package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/manifest"
)

// fakeArchives serves InRelease files for the default suites on a local
// server and stores the same files, with the given security Packages index,
// as the cache's lists: `pith outdated` then needs no apt-get and no network
// beyond 127.0.0.1. It returns the cache and an image directory whose
// manifest names the server as its mirrors.
func fakeArchives(t *testing.T, securityPackages string, sslVersion string) (cache, img string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("InRelease of " + r.URL.Path))
	}))
	t.Cleanup(srv.Close)
	c := config.Default()
	c.Mirror, c.SecurityMirror = srv.URL+"/debian", srv.URL+"/debian-security"
	cache = t.TempDir()
	l := apt.Lists{Dir: apt.ListsDir(cache, c.Archives()), Archives: c.Archives()}
	os.MkdirAll(l.Dir, 0o755)
	for _, a := range c.Archives() {
		p := "/" + strings.TrimPrefix(a.URI, srv.URL+"/") + "/dists/" + a.Suite + "/InRelease"
		os.WriteFile(filepath.Join(l.Dir, apt.FileName(a.URI+"/dists/"+a.Suite+"/InRelease")), []byte("InRelease of "+p), 0o644)
		idx := ""
		if a.IsSecurity() {
			idx = securityPackages
		}
		os.WriteFile(l.PackagesFile(a), []byte(idx), 0o644)
	}
	img = writeSBOM(t, "1.0.0", sslVersion, "bookworm")
	m := manifest.Manifest{Schema: manifest.SchemaVersion, Version: "1.0.0",
		Inputs: manifest.Inputs{Suite: c.Suite, Mirror: c.Mirror, SecurityMirror: c.SecurityMirror, Suites: c.Suites}}
	b, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(img, manifest.FileName), b, 0o644)
	return cache, img
}

const securityIndex = `Package: libssl3
Source: openssl
Version: 3.0.22-1~deb12u2
Architecture: amd64
Filename: pool/updates/main/o/openssl/libssl3_3.0.22-1~deb12u2_amd64.deb
SHA256: 1111111111111111111111111111111111111111111111111111111111111111
`

func TestOutdatedCommand(t *testing.T) {
	cache, img := fakeArchives(t, securityIndex, "3.0.20-1~deb12u2")
	out, err := runPith(t, "outdated", "--json=false", "--cache", cache, img)
	if err != errOutdated || !strings.Contains(out, "1 packages have security updates:\n  libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2 (bookworm-security)\n") {
		t.Errorf("pith outdated on an old image: %v\n%s", err, out)
	}
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, f) }
	if err := checkCurrent(t.Context(), img, cache, false, logf); err != nil {
		t.Errorf("release without --require-current refused: %v", err)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "warning: releasing an image %d packages behind") {
		t.Errorf("release of an old image without a warning: %q", logs)
	}
	if err := checkCurrent(t.Context(), img, cache, true, logf); err == nil || !strings.Contains(err.Error(), "--require-current: the image is behind Debian's security archive in 1 packages") {
		t.Errorf("release --require-current of an old image: %v", err)
	}

	cache, img = fakeArchives(t, securityIndex, "3.0.22-1~deb12u2")
	if out, err := runPith(t, "outdated", "--cache", cache, img); err != nil || !strings.Contains(out, "up to date") {
		t.Errorf("pith outdated on a current image: %v\n%s", err, out)
	}
	if err := checkCurrent(t.Context(), img, cache, true, logf); err != nil {
		t.Errorf("release --require-current of a current image: %v", err)
	}
}
