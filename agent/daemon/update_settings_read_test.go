package daemon

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/cloudconfig"
)

// TestUpdateSettingsAllRead: every field of settings.json's update
// section (what cloudconfig's Settings().Update carries from coreos.update,
// coreos.locksmith and pith.update) reaches pithd: a flag of the real flag
// set, the trusted keys, or the reboot hooks. A new field fails here until
// pithd reads it (cloudconfig/apply's TestNoKeySilentlyIgnored checks the
// keys reach these fields).
func TestUpdateSettingsAllRead(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	key := base64.StdEncoding.EncodeToString(pub)
	flag := func(name, want string) func(*testing.T, *pflag.FlagSet, []ed25519.PublicKey, string) {
		return func(t *testing.T, fs *pflag.FlagSet, _ []ed25519.PublicKey, _ string) {
			if f := fs.Lookup(name); f == nil || !f.Changed || f.Value.String() != want {
				t.Errorf("--%s = %v, want %q", name, f.Value, want)
			}
		}
	}
	hook := func(pre bool) func(*testing.T, *pflag.FlagSet, []ed25519.PublicKey, string) {
		return func(t *testing.T, _ *pflag.FlagSet, _ []ed25519.PublicKey, path string) {
			h, err := readRebootHooks(path)
			got := h.PostReboot
			if pre {
				got = h.PreReboot
			}
			if err != nil || !slices.Equal(got, []string{"/bin/true"}) {
				t.Errorf("hooks %+v, %v", h, err)
			}
		}
	}
	read := map[string]struct {
		set   func(*cloudconfig.UpdateSettings)
		check func(*testing.T, *pflag.FlagSet, []ed25519.PublicKey, string)
	}{
		"Channel":        {func(u *cloudconfig.UpdateSettings) { u.Channel = "beta" }, flag("update-channel", "beta")},
		"Server":         {func(u *cloudconfig.UpdateSettings) { u.Server = "https://u.example/" }, flag("update-server", "https://u.example/")},
		"RebootStrategy": {func(u *cloudconfig.UpdateSettings) { u.RebootStrategy = "reboot" }, flag("reboot-strategy", "reboot")},
		"WindowStart":    {func(u *cloudconfig.UpdateSettings) { u.WindowStart = "Sun 03:00" }, flag("reboot-window-start", "Sun 03:00")},
		"WindowLength":   {func(u *cloudconfig.UpdateSettings) { u.WindowLength = time.Hour }, flag("reboot-window-length", "1h0m0s")},
		"Group":          {func(u *cloudconfig.UpdateSettings) { u.Group = "db" }, flag("reboot-group", "db")},
		"MaxHolders":     {func(u *cloudconfig.UpdateSettings) { u.MaxHolders = 3 }, flag("reboot-lock-max", "3")},
		"CheckInterval":  {func(u *cloudconfig.UpdateSettings) { u.CheckInterval = 2 * time.Hour }, flag("update-interval", "2h0m0s")},
		"VerifyTimeout":  {func(u *cloudconfig.UpdateSettings) { u.VerifyTimeout = 3 * time.Minute }, flag("update-verify-timeout", "3m0s")},
		"UnitSettle":     {func(u *cloudconfig.UpdateSettings) { u.UnitSettle = 45 * time.Second }, flag("update-unit-settle", "45s")},
		"PublicKeys": {func(u *cloudconfig.UpdateSettings) { u.PublicKeys = []string{key} },
			func(t *testing.T, _ *pflag.FlagSet, keys []ed25519.PublicKey, _ string) {
				if len(keys) != 1 || !pub.Equal(keys[0]) {
					t.Errorf("keys %v", keys)
				}
			}},
		"PreReboot":  {func(u *cloudconfig.UpdateSettings) { u.PreReboot = []string{"/bin/true"} }, hook(true)},
		"PostReboot": {func(u *cloudconfig.UpdateSettings) { u.PostReboot = []string{"/bin/true"} }, hook(false)},
	}
	typ := reflect.TypeFor[cloudconfig.UpdateSettings]()
	for i := 0; i < typ.NumField(); i++ {
		name := typ.Field(i).Name
		t.Run(name, func(t *testing.T) {
			r, ok := read[name]
			if !ok {
				t.Fatalf("settings.json's update.%s is read by nothing in pithd (or this test does not know how)", name)
			}
			var s cloudconfig.Settings
			r.set(&s.Update)
			if reflect.ValueOf(s.Update).Field(i).IsZero() {
				t.Fatalf("the test's setter does not set %s", name)
			}
			b, _ := json.Marshal(s)
			p := filepath.Join(t.TempDir(), "settings.json")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			fs := pflag.NewFlagSet("pithd", pflag.ContinueOnError)
			(&Config{}).AddFlags(fs)
			keys, err := readUpdateSettings(fs, p)
			if err != nil {
				t.Fatal(err)
			}
			r.check(t, fs, keys, p)
		})
	}
}
