package main

import (
	"bytes"
	"crypto/ed25519"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/channels"
)

func runPith(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(args)
	err := rootCmd.Execute()
	return out.String(), err
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	out, err := runPith(t, "keygen", "--out", dir)
	if err != nil {
		t.Fatal(err)
	}
	priv := filepath.Join(dir, channels.PrivateKeyFile)
	st, err := os.Stat(priv)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key %v mode %v", err, st.Mode())
	}
	pub, err := channels.LoadPublicKeyFile(filepath.Join(dir, channels.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, channels.KeyID(pub)) {
		t.Fatalf("output does not name the key id: %q", out)
	}
	k, err := channels.LoadPrivateKey(priv)
	if err != nil || !pub.Equal(k.Public()) {
		t.Fatalf("private key does not match the public key: %v", err)
	}
	if _, err := runPith(t, "keygen", "--out", dir); err == nil {
		t.Fatal("keygen overwrote an existing key")
	}
	os.Chmod(priv, 0o644)
	if _, err := channels.LoadPrivateKey(priv); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key accepted: %v", err)
	}
}

func TestReleaseResign(t *testing.T) {
	dir, repo := t.TempDir(), t.TempDir()
	pub, priv, err := channels.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyPath, _, err := channels.WriteKeyPair(dir, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	m, err := channels.Publish(repo, channels.Release{Channel: "stable", Version: "1.0.0", Platform: "linux/amd64", ValidFor: 2 * time.Hour,
		Payloads: []channels.PayloadSource{{Name: channels.PayloadUSR, File: "usr", Open: func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("usr")), nil
		}}}}, []ed25519.PrivateKey{priv}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		out  string // substring of output or error
		ok   bool
	}{
		{[]string{"release", "resign", "--repo", repo, "--key", keyPath}, "--channel and --repo are required", false},
		{[]string{"release", "resign", "--channel", "beta", "--repo", repo, "--key", keyPath}, "no such file", false},
		{[]string{"release", "resign", "--channel", "stable", "--repo", repo, "--key", keyPath, "--valid-for", "720h"}, "channel stable (1.0.0) re-signed, valid until", true},
	}
	for _, tt := range tests {
		out, err := runPith(t, tt.args...)
		if tt.ok != (err == nil) || (!strings.Contains(out, tt.out) && (err == nil || !strings.Contains(err.Error(), tt.out))) {
			t.Errorf("pith %s: %q, %v; want ok=%v and %q", strings.Join(tt.args, " "), out, err, tt.ok, tt.out)
		}
	}
	got, err := channels.ChannelManifest(repo, "stable")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != m.Version || got.Expires.Before(time.Now().Add(719*time.Hour)) {
		t.Fatalf("after resign: version %s, expires %s (was %s)", got.Version, got.Expires, m.Expires)
	}
}
