package cli

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/install"
)

func TestCommand(t *testing.T) {
	dir := t.TempDir()
	pub, priv, _ := channels.GenerateKey()
	if _, _, err := channels.WriteKeyPair(dir, pub, priv); err != nil {
		t.Fatal(err)
	}
	m := filepath.Join(dir, "pith.manifest.json")
	os.WriteFile(m, []byte(`{"schema":1}`), 0o644)
	tests := []struct {
		name string
		args []string
		err  string
	}{
		{name: "no device", args: []string{"--image", "x.img"}, err: "--device and --image are required"},
		{name: "no image", args: []string{"--device", "/dev/null"}, err: "--device and --image are required"},
		{name: "missing key file", args: []string{"--device", "/dev/null", "--image", "x", "--key", filepath.Join(dir, "nope.pub"), "--no-default-keys"}, err: "nope.pub"},
		{name: "sign", args: []string{"sign", "--key", filepath.Join(dir, channels.PrivateKeyFile), m}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := Command()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(tc.args)
			err := cmd.Execute()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	// The signature sign wrote verifies with the key's public half.
	body, _ := os.ReadFile(m)
	sig, err := os.ReadFile(m + install.SignatureSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := install.VerifyManifest(body, sig, channels.NewKeyring(pub)); err != nil || id != channels.KeyID(pub) {
		t.Errorf("VerifyManifest: %q, %v", id, err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if _, err := install.VerifyManifest(body, sig, channels.NewKeyring(other)); err == nil {
		t.Errorf("a signature by another key verified")
	}
}

// TestProgressLines: off a terminal, one line per 10% per step.
func TestProgressLines(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	p := progress(f)
	for _, step := range []string{"verify", "write"} {
		for done := int64(0); done <= 1000; done += 25 {
			p(step, done, 1000)
		}
	}
	f.Close()
	b, _ := os.ReadFile(f.Name())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 22 || !strings.HasPrefix(lines[0], "pith install: verify 0%") || !strings.HasPrefix(lines[21], "pith install: write 100%") {
		t.Errorf("%d lines:\n%s", len(lines), b)
	}
}
