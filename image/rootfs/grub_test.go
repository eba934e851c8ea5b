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

// fakeDeb builds a .deb of package pkg holding files (path: content).
func fakeDeb(t *testing.T, pkg, version, arch string, files map[string]string) []byte {
	t.Helper()
	root := filepath.Join(t.TempDir(), "pkg")
	os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755)
	for p, content := range files {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(content), 0o755)
	}
	os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte("Package: "+pkg+"\nVersion: "+version+"\nArchitecture: "+arch+"\nMaintainer: t <t@example.org>\nDescription: test\n"), 0o644)
	deb := filepath.Join(t.TempDir(), "g.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v: %s", err, out)
	}
	b, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeGrubDeb builds a grub-efi-arm64-bin-like .deb holding
// usr/lib/grub/arm64-efi/kernel.img with content.
func fakeGrubDeb(t *testing.T, version, content string) []byte {
	return fakeDeb(t, "grub-efi-arm64-bin", version, "arm64", map[string]string{"usr/lib/grub/arm64-efi/kernel.img": content})
}

func TestFetchGrub(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Fatal("dpkg-deb is missing: make deps")
	}
	debs := map[string][]byte{"1.0": fakeGrubDeb(t, "1.0", "old"), "2.0": fakeGrubDeb(t, "2.0", "new")}
	var gets atomic.Int32
	served := map[string][]byte{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		b, ok := served[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer ts.Close()
	tests := []struct {
		name    string
		arch    string
		corrupt bool // the server's .deb differs from the index's hash
		want    string
		err     string
	}{
		{name: "arm64: newest version, from the cache the second time", arch: "arm64", want: "new"},
		{name: "arm64: a .deb that does not match the signed index", arch: "arm64", corrupt: true, err: "the signed index says"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			a := config.Archive{URI: ts.URL + "/debian", Suite: "bookworm"}
			lists := apt.ListsFor(cache, []config.Archive{a}, tt.arch)
			var idx strings.Builder
			for _, v := range []string{"1.0", "2.0"} {
				path := fmt.Sprintf("pool/main/g/grub2/grub-efi-arm64-bin_%s_arm64.deb", v)
				sum := sha256.Sum256(debs[v])
				b := debs[v]
				if tt.corrupt {
					b = append([]byte("x"), b...)
				}
				served["/debian/"+path] = b
				fmt.Fprintf(&idx, "Package: grub-efi-arm64-bin\nVersion: %s\nArchitecture: arm64\nFilename: %s\nSHA256: %s\n\n", v, path, hex.EncodeToString(sum[:]))
			}
			os.MkdirAll(lists.Dir, 0o755)
			os.WriteFile(lists.PackagesFile(a), []byte(idx.String()), 0o644)
			gets.Store(0)
			for round := 0; round < 2; round++ {
				g, fetched, err := FetchGrub(context.Background(), lists, cache, t.TempDir(), t.Logf)
				if tt.err != "" {
					if err == nil || !strings.Contains(err.Error(), tt.err) {
						t.Fatalf("FetchGrub: %v, want %q", err, tt.err)
					}
					if m, _ := filepath.Glob(filepath.Join(cache, "debian", "archives", "*")); len(m) != 0 {
						t.Fatalf("a bad download was kept: %v", m)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if g.MkImage != "" || g.Version != "2.0" {
					t.Fatalf("round %d: %+v, want version 2.0 with the host's grub-mkimage", round, g)
				}
				if len(fetched) != 1 || fetched[0].Package != "grub-efi-arm64-bin" || fetched[0].Version != "2.0" {
					t.Fatalf("round %d: fetched %+v, want grub-efi-arm64-bin 2.0", round, fetched)
				}
				b, err := os.ReadFile(filepath.Join(g.Lib, "arm64-efi", "kernel.img"))
				if err != nil || string(b) != tt.want {
					t.Fatalf("round %d: kernel.img %q, %v; want %q", round, b, err, tt.want)
				}
			}
			if gets.Load() != 1 {
				t.Errorf("%d downloads for two fetches, want 1", gets.Load())
			}
		})
	}
}
