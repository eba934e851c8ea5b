package channels

import (
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestArchLayout(t *testing.T) {
	tests := []struct {
		arch, dir, url string
	}{
		{arch: "amd64", dir: "/r", url: "http://s:8080/"},
		{arch: "", dir: "/r", url: "http://s:8080/"},
		{arch: "arm64", dir: "/r/arm64", url: "http://s:8080/arm64/"},
	}
	for _, tt := range tests {
		if got := ArchDir("/r", tt.arch); got != tt.dir {
			t.Errorf("ArchDir(%q) = %s, want %s", tt.arch, got, tt.dir)
		}
		if got := ArchURL("http://s:8080/", tt.arch); got != tt.url {
			t.Errorf("ArchURL(%q) = %s, want %s", tt.arch, got, tt.url)
		}
	}
	for platform, want := range map[string]string{"linux/amd64": "amd64", "linux/arm64": "arm64", "linux/riscv64": "", "amd64": "", "darwin/arm64": ""} {
		got, err := PlatformArch(platform)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("PlatformArch(%q) = %q, %v; want %q", platform, got, err, want)
		}
	}
}

// One channel name, one release per architecture: each node reads its own
// architecture's manifest, and a manifest served to the wrong architecture
// is refused before any payload is fetched.
func TestChannelPerArch(t *testing.T) {
	repo := t.TempDir()
	key := testKey(t)
	pub := pubOf(key)
	for _, arch := range []string{"amd64", "arm64"} {
		_, err := Publish(ArchDir(repo, arch), Release{Channel: "stable", Version: "1.0.0", Platform: "linux/" + arch,
			Payloads: []PayloadSource{bytesSource(PayloadUSR, "usr", []byte("usr-"+arch))}}, []ed25519.PrivateKey{key}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	ts := (&testRepo{dir: repo}).serve(t, nil).URL
	tests := []struct {
		name, node, served string
		err                error
	}{
		{"amd64 node, root", "linux/amd64", "amd64", nil},
		{"arm64 node, arm64 dir", "linux/arm64", "arm64", nil},
		{"arm64 node pointed at amd64's channel", "linux/arm64", "amd64", ErrWrongPlatform},
		{"amd64 node pointed at arm64's channel", "linux/amd64", "arm64", ErrWrongPlatform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(ArchURL(ts, tt.served), Policy{Keys: NewKeyring(pub), Channel: "stable", Platform: tt.node})
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.Manifest(t.Context(), "")
			if !errors.Is(err, tt.err) {
				t.Fatalf("Manifest: %v, want %v", err, tt.err)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "is for "+"linux/"+tt.served+", this node is "+tt.node) {
					t.Errorf("message %q does not name both architectures", err)
				}
				return
			}
			if m.Platform != tt.node {
				t.Errorf("got the %s release", m.Platform)
			}
		})
	}
	if _, err := Publish(filepath.Join(repo, "arm64"), Release{Channel: "stable", Version: "1.0.0", Platform: "linux/arm64",
		Payloads: []PayloadSource{bytesSource(PayloadUSR, "usr", []byte("x"))}}, []ed25519.PrivateKey{key}, nil); err == nil {
		t.Error("republished arm64 1.0.0")
	}
}
