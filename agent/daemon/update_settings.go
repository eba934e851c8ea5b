package daemon

// What the update subsystem takes from the image and from user-data: the
// running release's version from /usr/lib/os-release (pithd's own version
// is the build of the agent binary, the same in every image built from it),
// and cloud-config's coreos.update / coreos.locksmith / pith.update as
// `pithd firstboot` saved them (settings.json), so user-data configures the
// updater the way it did on CoreOS.

import (
	"bufio"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/version"
)

// readUpdateSettings applies the update section of the settings firstboot
// saved from user-data to flags not given on the command line, and returns
// its trusted release keys (pith.update.public_keys). A missing file is no
// error (no user-data, or Ignition).
func readUpdateSettings(fs_ *pflag.FlagSet, path string) ([]ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || path == "" {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s cloudconfig.Settings
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	u := s.Update
	set := func(flag, val string) error {
		if f := fs_.Lookup(flag); f != nil && !f.Changed && val != "" {
			return fs_.Set(flag, val)
		}
		return nil
	}
	for _, kv := range [][2]string{
		{"update-server", u.Server}, {"update-channel", u.Channel}, {"reboot-strategy", u.RebootStrategy},
		{"reboot-window-start", u.WindowStart}, {"reboot-group", u.Group},
	} {
		if err := set(kv[0], kv[1]); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, kv[0], err)
		}
	}
	if u.WindowLength > 0 {
		if err := set("reboot-window-length", u.WindowLength.String()); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if u.MaxHolders > 0 {
		if err := set("reboot-lock-max", strconv.Itoa(u.MaxHolders)); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if u.CheckInterval > 0 {
		if err := set("update-interval", u.CheckInterval.String()); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if u.VerifyTimeout > 0 {
		if err := set("update-verify-timeout", u.VerifyTimeout.String()); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if u.UnitSettle > 0 {
		if err := set("update-unit-settle", u.UnitSettle.String()); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	var keys []ed25519.PublicKey
	for _, k := range u.PublicKeys {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s: pith.update.public_keys: %q is not a base64 ed25519 public key", path, k)
		}
		keys = append(keys, ed25519.PublicKey(raw))
	}
	return keys, nil
}

// imageVersion is VERSION's first word in os-release ("1.2.0 (bookworm)"
// -> "1.2.0", exactly what pith build was given and pith release
// publishes), else VERSION_ID, else pithd's own version.
func imageVersion(osRelease string) string {
	f, err := os.Open(osRelease)
	if err != nil {
		return version.Version
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok {
			vals[k] = strings.Trim(v, `"'`)
		}
	}
	if w := strings.Fields(vals["VERSION"]); len(w) > 0 {
		return w[0]
	}
	if v := vals["VERSION_ID"]; v != "" {
		return v
	}
	return version.Version
}

// readUpdateConf applies update.conf and LOCKSMITHD_* variables to flags
// not given on the command line.
func readUpdateConf(fs *pflag.FlagSet, path string) error {
	set := func(flag, val string) error {
		if f := fs.Lookup(flag); f != nil && !f.Changed && val != "" {
			return fs.Set(flag, val)
		}
		return nil
	}
	if f, err := os.Open(path); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
			if !ok || strings.HasPrefix(k, "#") {
				continue
			}
			v = strings.Trim(v, `"'`)
			var err error
			switch k {
			case "SERVER":
				err = set("update-server", v)
			case "GROUP":
				err = set("update-channel", v)
			case "REBOOT_STRATEGY":
				err = set("reboot-strategy", v)
			case "LOCKSMITHD_REBOOT_WINDOW_START":
				err = set("reboot-window-start", v)
			case "LOCKSMITHD_REBOOT_WINDOW_LENGTH":
				err = set("reboot-window-length", v)
			}
			if err != nil {
				return fmt.Errorf("%s: %s: %w", path, k, err)
			}
		}
	}
	for env, flag := range map[string]string{
		"LOCKSMITHD_REBOOT_WINDOW_START":  "reboot-window-start",
		"LOCKSMITHD_REBOOT_WINDOW_LENGTH": "reboot-window-length",
		"LOCKSMITHD_GROUP":                "reboot-group",
		"REBOOT_STRATEGY":                 "reboot-strategy",
	} {
		if err := set(flag, os.Getenv(env)); err != nil {
			return fmt.Errorf("%s: %w", env, err)
		}
	}
	return nil
}
