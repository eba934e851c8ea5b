package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
