package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/channels"
)

func TestReleaseKeys(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) (string, string) {
		pub, priv, err := channels.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		privPath, pubPath, err := channels.WriteKeyPair(filepath.Join(dir, name), pub, priv)
		if err != nil {
			t.Fatal(err)
		}
		return privPath, pubPath
	}
	priv1, pub1 := mk("one")
	_, pub2 := mk("two")
	garbage := filepath.Join(dir, "garbage.pub")
	if err := os.WriteFile(garbage, []byte("ssh-ed25519 AAAA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		paths []string
		err   string
	}{
		{"none", nil, ""},
		{"two keys", []string{pub1, pub2}, ""},
		{"missing file", []string{filepath.Join(dir, "nope.pub")}, "no such file"},
		{"private key", []string{priv1}, "is a private key: give the public half"},
		{"not PEM", []string{garbage}, "not a PEM PUBLIC KEY"},
		{"same key twice", []string{pub1, filepath.Join(dir, "one", "..", "one", "pith-release.pub")}, "is the same key as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := readReleaseKeys(tt.paths)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			usr := t.TempDir()
			const epoch = 1767225600
			ids, err := installReleaseKeys(usr, keys, epoch)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) != len(tt.paths) {
				t.Fatalf("ids %v for %d keys", ids, len(tt.paths))
			}
			// The node reads them back with the update agent's loader.
			ring, err := channels.LoadKeyring(filepath.Join(usr, "share/pith/release-keys"))
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range tt.paths {
				want, err := channels.LoadPublicKeyFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if ids[i] != channels.KeyID(want) {
					t.Errorf("id %s, want %s", ids[i], channels.KeyID(want))
				}
				if _, ok := ring.Lookup(ids[i]); !ok {
					t.Errorf("key %s not trusted from the USR tree", ids[i])
				}
				st, err := os.Stat(filepath.Join(usr, "share/pith/release-keys", ids[i]+".pub"))
				if err != nil {
					t.Fatal(err)
				}
				if !st.ModTime().Equal(time.Unix(epoch, 0)) || st.Mode().Perm() != 0o644 {
					t.Errorf("key file mtime %v mode %v, want the epoch and 0644", st.ModTime(), st.Mode())
				}
			}
			if ring.Len() != len(tt.paths) {
				t.Errorf("keyring has %d keys, want %d", ring.Len(), len(tt.paths))
			}
		})
	}
}
