package apt

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/config"
)

func TestFileName(t *testing.T) {
	tests := []struct{ uri, want string }{
		{"http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages", "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"},
		{"http://deb.debian.org/debian-security/dists/bookworm-security/InRelease", "deb.debian.org_debian-security_dists_bookworm-security_InRelease"},
		{"https://user:pw@m.example:8080/de_bian/dists/x~1/Release", "m.example:8080_de%5fbian_dists_x%7e1_Release"},
	}
	for _, tt := range tests {
		if got := FileName(tt.uri); got != tt.want {
			t.Errorf("FileName(%q) = %q, want %q", tt.uri, got, tt.want)
		}
	}
}

const packagesFile = `Package: libssl3
Source: openssl
Version: 3.0.22-1~deb12u2
Architecture: amd64
Depends: libc6 (>= 2.34)
Description: Secure Sockets Layer toolkit
 a continuation line: Version: 9
Filename: pool/updates/main/o/openssl/libssl3_3.0.22-1~deb12u2_amd64.deb
SHA256: 1111111111111111111111111111111111111111111111111111111111111111

Package: linux-image-6.1.0-57-cloud-amd64
Source: linux-signed-amd64 (6.1.192+3)
Version: 6.1.192-3
Architecture: amd64
Filename: pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb
SHA256: 2222222222222222222222222222222222222222222222222222222222222222
`

func TestDependNames(t *testing.T) {
	for _, tt := range []struct{ field, want string }{
		{"", ""},
		{"libc6 (>= 2.34)", "libc6"},
		{"libc6 (>= 2.34), libsdl2-2.0-0 (>= 2.0.12), grub-common (= 2.12-1~bpo12+1)", "libc6 libsdl2-2.0-0 grub-common"},
		{"libpulse0 | libasound2, python3:any (>= 3.11~), default-dbus-session-bus | dbus-session-bus", "libpulse0 python3 default-dbus-session-bus"},
	} {
		if got := strings.Join(DependNames(tt.field), " "); got != tt.want {
			t.Errorf("DependNames(%q) = %q, want %q", tt.field, got, tt.want)
		}
	}
}

func TestReadIndex(t *testing.T) {
	sec := config.Archive{URI: "http://deb.debian.org/debian-security", Suite: "bookworm-security"}
	l := Lists{Dir: t.TempDir(), Archives: []config.Archive{sec}}
	if _, err := l.Digest(); err == nil {
		t.Errorf("Digest without lists succeeded")
	}
	if err := os.WriteFile(l.PackagesFile(sec), []byte(packagesFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if filepath.Base(l.PackagesFile(sec)) != "deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages" {
		t.Errorf("PackagesFile %s", l.PackagesFile(sec))
	}
	idx, err := l.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	want := Candidate{Package: "linux-image-6.1.0-57-cloud-amd64", Version: "6.1.192-3", Arch: "amd64", Source: "linux-signed-amd64", SourceV: "6.1.192+3",
		Filename: "pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb",
		SHA256:   "2222222222222222222222222222222222222222222222222222222222222222", Archive: sec}
	got, ok := idx.Find("linux-image-6.1.0-57-cloud-amd64", "6.1.192-3", "amd64")
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("Find kernel = %+v, %v", got, ok)
	}
	if got.URL() != "http://deb.debian.org/debian-security/pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb" {
		t.Errorf("URL %s", got.URL())
	}
	ssl, ok := idx.Find("libssl3", "3.0.22-1~deb12u2", "amd64")
	if !ok || ssl.Source != "openssl" || ssl.SourceV != "3.0.22-1~deb12u2" || ssl.Depends != "libc6 (>= 2.34)" {
		t.Errorf("libssl3 = %+v (a continuation line must not override Version)", ssl)
	}
	if _, ok := idx.Find("libssl3", "3.0.20-1~deb12u2", "amd64"); ok {
		t.Errorf("found a version the index does not have")
	}
	d1, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(l.PackagesFile(sec), []byte(packagesFile+"\nPackage: new\nVersion: 1\n"), 0o644)
	if d2, _ := l.Digest(); d2 == d1 {
		t.Errorf("a changed index has the same digest")
	}
}

func TestConfig(t *testing.T) {
	l := Lists{Dir: t.TempDir(), Archives: config.Default().Archives()}
	dir := t.TempDir()
	p, err := l.Config(dir)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile(filepath.Join(dir, "etc", "sources.list"))
	want := "deb [signed-by=" + Keyring + "] http://deb.debian.org/debian bookworm main\n" +
		"deb [signed-by=" + Keyring + "] http://deb.debian.org/debian bookworm-updates main\n" +
		"deb [signed-by=" + Keyring + "] http://deb.debian.org/debian-security bookworm-security main\n"
	if string(src) != want {
		t.Errorf("sources.list:\n%s\nwant\n%s", src, want)
	}
	if _, err := os.Stat(p); err != nil {
		t.Error(err)
	}
}

func TestUnchanged(t *testing.T) {
	served := map[string]string{"/debian/dists/bookworm/InRelease": "signed release 1", "/ds/dists/bookworm-security/InRelease": "signed security 1"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := served[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, b)
	}))
	defer srv.Close()
	l := Lists{Dir: t.TempDir(), Archives: []config.Archive{{URI: srv.URL + "/debian", Suite: "bookworm"}, {URI: srv.URL + "/ds", Suite: "bookworm-security"}}}
	store := func(a config.Archive, body string) {
		os.WriteFile(filepath.Join(l.Dir, FileName(a.URI+"/dists/"+a.Suite+"/InRelease")), []byte(body), 0o644)
	}
	ctx := context.Background()
	if l.unchanged(ctx) {
		t.Errorf("unchanged without stored files")
	}
	store(l.Archives[0], "signed release 1")
	if l.unchanged(ctx) {
		t.Errorf("unchanged with one archive never fetched")
	}
	store(l.Archives[1], "signed security 1")
	if !l.unchanged(ctx) {
		t.Errorf("the archives serve what is stored, but not unchanged")
	}
	served["/ds/dists/bookworm-security/InRelease"] = "signed security 2"
	if l.unchanged(ctx) {
		t.Errorf("the security archive changed, but unchanged")
	}
	served["/ds/dists/bookworm-security/InRelease"] = "signed security 1 and more"
	if l.unchanged(ctx) {
		t.Errorf("a longer file with the stored one as prefix counts as unchanged")
	}
}
