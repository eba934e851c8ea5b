package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/config"
)

// amd64's UEFI GRUB is the newest 2.12 or later whose grub-common (its
// grub-mkimage) is there too: from the build's lists when they have it,
// else from the release's -backports lists (here fetched before: the test
// server has no InRelease, so the refresh fails and is only logged), else
// the host's.
func TestFetchEFIGrub(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Fatal("dpkg-deb is missing: make deps")
	}
	served := map[string][]byte{}
	var debs, bpoReqs atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".deb") {
			debs.Add(1)
		}
		if strings.Contains(r.URL.Path, "-backports") {
			bpoReqs.Add(1)
		}
		b, ok := served[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer ts.Close()
	// stanza serves pkg at version (one .deb each) and returns its index
	// stanza.
	stanzas := map[string]string{}
	stanza := func(pkg, version string) string {
		if s, ok := stanzas[pkg+"_"+version]; ok {
			return s
		}
		files := map[string]string{"usr/lib/grub/x86_64-efi/kernel.img": "modules " + version}
		if pkg == "grub-common" {
			files = map[string]string{"usr/bin/grub-mkimage": "mkimage " + version}
		}
		b := fakeDeb(t, pkg, version, "amd64", files)
		path := fmt.Sprintf("pool/main/g/grub2/%s_%s_amd64.deb", pkg, version)
		served["/debian/"+path] = b
		sum := sha256.Sum256(b)
		stanzas[pkg+"_"+version] = fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nFilename: %s\nSHA256: %s\n\n", pkg, version, path, hex.EncodeToString(sum[:]))
		return stanzas[pkg+"_"+version]
	}
	both := func(v string) string { return stanza("grub-efi-amd64-bin", v) + stanza("grub-common", v) }
	tests := []struct {
		name, release, backports string // Packages indexes
		want                     string // version; empty: the host's
		readsBackports           bool
	}{
		{"bookworm: 2.12 from backports", both("2.06-13+deb12u2"), both("2.12-1~bpo12+1"), "2.12-1~bpo12+1", true},
		{"the release has it: newest, backports not read", both("2.12-1") + both("2.12-3"), both("2.14-1~bpo13+1"), "2.12-3", false},
		{"a version without its grub-common is passed over", both("2.06-13") + stanza("grub-efi-amd64-bin", "2.12-2"), both("2.12-1~bpo12+1"), "2.12-1~bpo12+1", true},
		{"no 2.12 anywhere: the host's", both("2.04-20"), both("2.06-3~deb11u5"), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			rel := config.Archive{URI: ts.URL + "/debian", Suite: "bookworm"}
			sec := config.Archive{URI: ts.URL + "/debian-security", Suite: "bookworm-security"}
			bpo := config.Archive{URI: rel.URI, Suite: "bookworm-backports"}
			lists := apt.ListsFor(cache, []config.Archive{sec, rel}, "amd64")
			bl := apt.ListsFor(cache, []config.Archive{bpo}, "amd64")
			for _, f := range []struct {
				l   apt.Lists
				a   config.Archive
				idx string
			}{{lists, rel, tt.release}, {lists, sec, ""}, {bl, bpo, tt.backports}} {
				os.MkdirAll(f.l.Dir, 0o755)
				os.WriteFile(f.l.PackagesFile(f.a), []byte(f.idx), 0o644)
			}
			var logs []string
			logf := func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }
			for round := 0; round < 2; round++ {
				debs.Store(0)
				bpoReqs.Store(0)
				g, fetched, err := FetchGrub(context.Background(), lists, cache, t.TempDir(), logf)
				if err != nil {
					t.Fatal(err)
				}
				if read := bpoReqs.Load() > 0; read != tt.readsBackports {
					t.Errorf("round %d: backports lists read: %v, want %v", round, read, tt.readsBackports)
				}
				if g.Version != tt.want {
					t.Fatalf("round %d: version %q, want %q (%+v; log %q)", round, g.Version, tt.want, g, logs)
				}
				var names []string
				for _, c := range fetched {
					if c.Version != tt.want {
						t.Errorf("round %d: fetched %s %s, want %s", round, c.Package, c.Version, tt.want)
					}
					names = append(names, c.Package)
				}
				if tt.want != "" && strings.Join(names, " ") != "grub-efi-amd64-bin grub-common" || tt.want == "" && len(names) != 0 {
					t.Errorf("round %d: fetched %v", round, names)
				}
				if tt.want == "" {
					if g.Lib != "" || g.MkImage != "" || !strings.Contains(strings.Join(logs, "\n"), "no GRUB 2.12") {
						t.Fatalf("%+v, log %q: want the host's GRUB, and a warning", g, logs)
					}
					continue
				}
				mk, _ := os.ReadFile(g.MkImage)
				mods, _ := os.ReadFile(filepath.Join(g.Lib, "x86_64-efi", "kernel.img"))
				if string(mk) != "mkimage "+tt.want || string(mods) != "modules "+tt.want {
					t.Fatalf("round %d: grub-mkimage %q, kernel.img %q: want both of %s", round, mk, mods, tt.want)
				}
				if n, want := debs.Load(), map[int]int32{0: 2, 1: 0}[round]; n != want {
					t.Errorf("round %d: %d .debs downloaded, want %d (then cached)", round, n, want)
				}
			}
		})
	}
}

func TestBackportsOf(t *testing.T) {
	m := "http://deb.debian.org/debian"
	for _, tt := range []struct {
		in   []config.Archive
		want string
	}{
		{[]config.Archive{{URI: "http://s/debian-security", Suite: "bookworm-security"}, {URI: m, Suite: "bookworm"}}, "deb " + m + " bookworm-backports main"},
		{[]config.Archive{{URI: m, Suite: "trixie"}, {URI: m, Suite: "trixie-updates"}}, "deb " + m + " trixie-backports main"},
		{[]config.Archive{{URI: m, Suite: "bookworm-updates"}}, ""},
	} {
		a, ok := backportsOf(tt.in)
		if got := a.SourcesLine(); !ok && tt.want != "" || ok && got != tt.want {
			t.Errorf("backportsOf(%v) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}
