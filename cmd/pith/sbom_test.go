package main

import (
	"crypto/ed25519"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/sbom"
)

// writeSBOM writes an image directory holding only an SBOM whose libssl3
// has the given version and archive.
func writeSBOM(t *testing.T, version, ssl, archive string) string {
	t.Helper()
	const sum = "abababababababababababababababababababababababababababababababab"
	inv := &sbom.Inventory{Name: "pith", Version: version, Suite: "bookworm",
		Kernel: sbom.Deb{Name: "linux-image-6.1.0-57-cloud-amd64", Version: "6.1.192-3", Arch: "amd64", SHA256: sum, Archive: "bookworm-security"},
		Packages: []sbom.Deb{
			{Name: "bash", Version: "5.2.15-2+b9", Arch: "amd64", Source: "bash", SourceVersion: "5.2.15-2", SHA256: sum, Archive: "bookworm"},
			{Name: "libssl3", Version: ssl, Arch: "amd64", Source: "openssl", SourceVersion: ssl, SHA256: sum, Archive: archive},
		}}
	b, err := inv.Document(time.Unix(1767225600, 0), "pith-test").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, sbom.FileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSBOMDiffCommand(t *testing.T) {
	old := writeSBOM(t, "1.0.0", "3.0.20-1~deb12u2", "bookworm")
	cur := writeSBOM(t, "1.0.1", "3.0.22-1~deb12u2", "bookworm-security")
	out, err := runPith(t, "sbom", "diff", old, filepath.Join(cur, sbom.FileName))
	if err != nil || !strings.Contains(out, "1.0.0 -> 1.0.1: 1 upgraded (1 security), 0 added, 0 removed") ||
		!strings.Contains(out, "libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2 (security: bookworm-security)") {
		t.Errorf("pith sbom diff: %v\n%s", err, out)
	}
	if _, err := runPith(t, "sbom", "diff", "--exit-code", old, cur); err != errDiffers {
		t.Errorf("--exit-code on different images: %v, want errDiffers", err)
	}
	if _, err := runPith(t, "sbom", "diff", "--exit-code", "--json=false", cur, cur); err != nil {
		t.Errorf("--exit-code on equal images: %v", err)
	}
	if _, err := runPith(t, "sbom", "diff", "--exit-code=false", old, t.TempDir()); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a directory without an SBOM: %v", err)
	}
}

// TestReleaseSBOM: a release stores the image's SBOM and its diff against the
// channel's previous release, and names the security upgrades for the
// signed manifest.
func TestReleaseSBOM(t *testing.T) {
	repo := t.TempDir()
	_, priv, err := channels.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	publish := func(version string, img string) *channels.Manifest {
		files, security, err := releaseSBOM(img, repo, "stable", t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		m, err := channels.Publish(repo, channels.Release{Channel: "stable", Version: version, Platform: "linux/amd64", ValidFor: 2 * time.Hour,
			SecurityUpgrades: security, Files: files,
			Payloads: []channels.PayloadSource{{Name: channels.PayloadUSR, File: "usr", Open: func() (io.ReadCloser, error) {
				return io.NopCloser(strings.NewReader("usr " + version)), nil
			}}}}, []ed25519.PrivateKey{priv}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	first := publish("1.0.0", writeSBOM(t, "1.0.0", "3.0.20-1~deb12u2", "bookworm"))
	if len(first.SecurityUpgrades) != 0 {
		t.Errorf("first release has security upgrades %v", first.SecurityUpgrades)
	}
	if _, err := os.Stat(filepath.Join(repo, "1.0.0", DiffFileName)); err == nil {
		t.Errorf("the first release has a diff")
	}
	second := publish("1.0.1", writeSBOM(t, "1.0.1", "3.0.22-1~deb12u2", "bookworm-security"))
	want := "libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2 (security: bookworm-security)"
	if len(second.SecurityUpgrades) != 1 || second.SecurityUpgrades[0] != want {
		t.Errorf("security upgrades %q, want [%q]", second.SecurityUpgrades, want)
	}
	// Nodes read the signed channel manifest.
	if m, err := channels.ChannelManifest(repo, "stable"); err != nil || len(m.SecurityUpgrades) != 1 {
		t.Errorf("channel manifest: %+v, %v", m, err)
	}
	var d sbom.Diff
	b, err := os.ReadFile(filepath.Join(repo, "1.0.1", DiffFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil || d.From != "1.0.0" || d.To != "1.0.1" || len(d.Upgraded) != 1 || !d.Upgraded[0].Security {
		t.Errorf("stored diff %+v (%v)", d, err)
	}
	// The stored SBOMs make the releases comparable later.
	if out, err := runPith(t, "sbom", "diff", filepath.Join(repo, "1.0.0"), filepath.Join(repo, "1.0.1")); err != nil || !strings.Contains(out, want) {
		t.Errorf("pith sbom diff of two releases: %v\n%s", err, out)
	}
}
