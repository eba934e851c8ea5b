package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/sbom"
)

// LiveEFIGrub finds the image's UEFI GRUB where pith build unpacked it,
// or downloads the .debs the SBOM names (their SHA-256 checked) from an
// HTTP server on 127.0.0.1 and unpacks them; the host's GRUB is a zero
// Grub.
func TestLiveEFIGrub(t *testing.T) {
	v12 := "2.12-1~bpo12+1"
	debs := map[string][]byte{
		"/pool/grub-efi-amd64-bin.deb": fakeDeb(t, "grub-efi-amd64-bin", v12, "amd64", map[string]string{"usr/lib/grub/x86_64-efi/kernel.img": "grub-efi-amd64-bin usr/lib/grub/x86_64-efi/kernel.img"}),
		"/pool/grub-common.deb":        fakeDeb(t, "grub-common", v12, "amd64", map[string]string{"usr/bin/grub-mkimage": "grub-common usr/bin/grub-mkimage"}),
	}
	var fetched []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched = append(fetched, r.URL.Path)
		b, ok := debs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	deb := func(name, version, archive string) sbom.Deb {
		p := "/pool/" + name + ".deb"
		return sbom.Deb{Name: name, Version: version, Arch: "amd64", URL: srv.URL + p, SHA256: sum(debs[p]), Archive: archive}
	}
	uefi := func(pkgs ...sbom.Deb) []sbom.BootLoader {
		return []sbom.BootLoader{{Boot: sbom.BootBIOS, File: "core.img"}, {Boot: sbom.BootUEFI, File: "ESP EFI/BOOT/BOOTX64.EFI", Packages: pkgs}}
	}
	bpo := "bookworm-backports"
	badSum := deb("grub-common", v12, bpo)
	badSum.SHA256 = strings.Repeat("0", 64)
	tests := []struct {
		name    string
		loaders []sbom.BootLoader
		host    bool   // a zero Grub, no packages
		fetches int    // downloads
		err     string // the error's text
	}{
		{"no uefi boot loader", uefi()[:1], true, 0, ""},
		{"the host's GRUB", uefi(deb("grub-efi-amd64-bin", "2.06-13", sbom.HostArchive), deb("grub-common", "2.06-13", sbom.HostArchive)), true, 0, ""},
		{"downloaded and unpacked", uefi(deb("grub-efi-amd64-bin", v12, bpo), deb("grub-common", v12, bpo)), false, 2, ""},
		{"a wrong SHA-256", uefi(deb("grub-efi-amd64-bin", v12, bpo), badSum), false, 2, "SHA-256"},
		{"two versions", uefi(deb("grub-efi-amd64-bin", v12, bpo), deb("grub-common", "2.12-2", bpo)), false, 0, "of one version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			fetched = nil
			g, pkgs, err := LiveEFIGrub(context.Background(), cache, tt.loaders, t.Logf)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one saying %q", err, tt.err)
				}
				if _, serr := os.Stat(filepath.Join(cache, "grub")); !os.IsNotExist(serr) {
					t.Errorf("a failed fetch left %s/grub (%v)", cache, serr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if len(fetched) != tt.fetches {
				t.Errorf("downloaded %v, want %d .debs", fetched, tt.fetches)
			}
			if tt.err != "" {
				return
			}
			if tt.host {
				if g != (bootloader.Grub{}) || pkgs != nil {
					t.Errorf("got %+v, %v; want the host's GRUB (zero)", g, pkgs)
				}
				return
			}
			dir := filepath.Join(cache, "grub", v12+"_amd64")
			want := bootloader.Grub{Lib: filepath.Join(dir, "usr/lib/grub"), MkImage: filepath.Join(dir, "usr/bin/grub-mkimage"), Version: v12}
			if g != want || len(pkgs) != 2 || pkgs[0].Name != "grub-efi-amd64-bin" {
				t.Fatalf("got %+v, %+v; want %+v and the two packages", g, pkgs, want)
			}
			if b, err := os.ReadFile(g.MkImage); err != nil || string(b) != "grub-common usr/bin/grub-mkimage" {
				t.Errorf("%s: %q, %v", g.MkImage, b, err)
			}
			// Unpacked once: the next call finds it and downloads nothing.
			fetched = nil
			if g2, _, err := LiveEFIGrub(context.Background(), cache, tt.loaders, t.Logf); err != nil || g2 != g || len(fetched) != 0 {
				t.Errorf("again: %+v, %v, downloads %v; want the unpacked GRUB and none", g2, err, fetched)
			}
		})
	}
}
