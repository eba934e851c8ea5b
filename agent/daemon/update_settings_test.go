package daemon

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/version"
)

func TestImageVersion(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"pith image", "NAME=Pith\nVERSION=\"1.2.0 (bookworm)\"\nVERSION_ID=1.2.0\n", "1.2.0"},
		{"pre-release keeps its case", "VERSION=\"1.2.0-RC.1 (bookworm)\"\nVERSION_ID=1.2.0-rc.1\n", "1.2.0-RC.1"},
		{"only VERSION_ID", "VERSION_ID=2.0.0\n", "2.0.0"},
		{"neither", "NAME=Other\n", version.Version},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "os-release")
			os.WriteFile(p, []byte(tc.content), 0o644)
			if got := imageVersion(p); got != tc.want {
				t.Errorf("imageVersion = %q, want %q", got, tc.want)
			}
		})
	}
	if got := imageVersion("/nonexistent/os-release"); got != version.Version {
		t.Errorf("missing os-release: %q, want pithd's %q", got, version.Version)
	}
}

func TestReadUpdateSettings(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	key := base64.StdEncoding.EncodeToString(pub)
	for _, tc := range []struct {
		name, json string
		cmdline    []string
		want       map[string]string
		keys       int
		err        bool
	}{
		{name: "coreos.update and pith.update",
			json: `{"update":{"server":"http://10.0.2.100:8080/","channel":"beta","reboot_strategy":"reboot","window_length":3600000000000,"verify_timeout":120000000000,"public_keys":["` + key + `"]}}`,
			want: map[string]string{"update-server": "http://10.0.2.100:8080/", "update-channel": "beta", "reboot-strategy": "reboot", "reboot-window-length": "1h0m0s", "update-verify-timeout": "2m0s"}, keys: 1},
		{name: "command line wins",
			json:    `{"update":{"server":"http://a/","channel":"beta"}}`,
			cmdline: []string{"--update-server", "http://cmdline/"},
			want:    map[string]string{"update-server": "http://cmdline/", "update-channel": "beta"}},
		{name: "no update section", json: `{"kv":{}}`, want: map[string]string{"update-server": "", "update-channel": "stable", "reboot-group": "", "reboot-lock-max": "0"}},
		{name: "locksmith group and max holders", json: `{"update":{"group":"db","max_holders":3}}`,
			want: map[string]string{"reboot-group": "db", "reboot-lock-max": "3"}},
		{name: "bad key", json: `{"update":{"public_keys":["bm90IGEga2V5"]}}`, err: true},
		{name: "bad json", json: `{`, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			var server, channel, strategy, ws, wl string
			fs.StringVar(&server, "update-server", "", "")
			fs.StringVar(&channel, "update-channel", "stable", "")
			fs.StringVar(&strategy, "reboot-strategy", "best-effort", "")
			fs.StringVar(&ws, "reboot-window-start", "", "")
			fs.StringVar(&wl, "reboot-window-length", "", "")
			fs.String("reboot-group", "", "")
			fs.Int("reboot-lock-max", 0, "")
			fs.Duration("update-interval", 0, "")
			fs.Duration("update-verify-timeout", 0, "")
			if err := fs.Parse(tc.cmdline); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "settings.json")
			os.WriteFile(p, []byte(tc.json), 0o644)
			keys, err := readUpdateSettings(fs, p)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if tc.err {
				return
			}
			for k, v := range tc.want {
				if got := fs.Lookup(k).Value.String(); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if len(keys) != tc.keys {
				t.Errorf("%d extra keys, want %d", len(keys), tc.keys)
			}
		})
	}
	if _, err := readUpdateSettings(pflag.NewFlagSet("t", pflag.ContinueOnError), "/nonexistent/settings.json"); err != nil {
		t.Errorf("missing settings: %v", err)
	}
}
