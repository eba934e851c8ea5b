package pithinit

import (
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestURLSourceIgnition: the ignition.config.url source names an Ignition
// config, so anything else stops the boot in one line, before anything
// is applied: a cloud-config, a script, an invalid config even without
// storage, a fetch that failed. An empty answer is no config.
func TestURLSourceIgnition(t *testing.T) {
	const storageCfg = `{"ignition":{"version":"3.4.0"},"storage":{"disks":[{"device":"/dev/vdb","partitions":[{"label":"d"}]}]}}`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(storageCfg))
	zw.Close()
	for _, tc := range []struct {
		name     string
		ud       string
		readErr  error
		ignition bool // the source names an Ignition config
		config   bool // a config to apply
		stop     string
	}{
		{name: "valid", ud: storageCfg, ignition: true, config: true},
		{name: "gzip", ud: gz.String(), ignition: true, config: true},
		{name: "empty", ignition: true},
		{name: "cloud-config", ud: "#cloud-config\nhostname: a\n", ignition: true,
			stop: "(reading the config from ignition.config.url http://h/c) failed, the first boot stops here as Ignition does: it is not an Ignition config (it reads as cloud-config): ignition.config.url names an Ignition config"},
		{name: "script", ud: "#!/bin/sh\n", ignition: true, stop: "it reads as script"},
		{name: "invalid without storage", ud: `{"ignition":{"version":"3.4.0"},"systemd":{"units":[{"name":"no-suffix"}]}}`, ignition: true,
			stop: "(validating the Ignition config from ignition.config.url http://h/c) failed"},
		{name: "bad gzip", ud: "\x1f\x8bxx", ignition: true, stop: "not valid gzip"},
		{name: "fetch failed", readErr: errors.New("GET http://h/c: 404 Not Found"), ignition: true,
			stop: "(reading the ignition.config.url http://h/c) failed, the first boot stops here as Ignition does: GET http://h/c: 404 Not Found"},
		// Another source's invalid config without storage is pithd's to report.
		{name: "invalid without storage, fw_cfg", ud: `{"ignition":{"version":"3.4.0"},"systemd":{"units":[{"name":"no-suffix"}]}}`},
		{name: "cloud-config, fw_cfg", ud: "#cloud-config\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := firstBootSource{Name: "ignition.config.url http://h/c", Pithd: pithdIgnitionURL, Ignition: tc.ignition, Read: func() ([]byte, string, error) {
				if tc.ud == "" {
					return nil, "", tc.readErr
				}
				return []byte(tc.ud), "", tc.readErr
			}}
			cfg, data, got, err := userDataIgnition([]firstBootSource{src})
			if tc.stop != "" {
				var stop *StopError
				if !errors.As(err, &stop) || !strings.Contains(err.Error(), tc.stop) || strings.Contains(err.Error(), "\n") || cfg != nil {
					t.Fatalf("config %v, %v; want a one-line stop with %q", cfg, err, tc.stop)
				}
				return
			}
			if err != nil || (cfg != nil) != tc.config {
				t.Fatalf("config %v, %v; want one: %v", cfg, err, tc.config)
			}
			if tc.config && (string(data) != storageCfg || got.Pithd != pithdIgnitionURL) {
				t.Errorf("data %q from %+v, want the config, decompressed, from ignition-url", data, got)
			}
		})
	}
}

// TestURLReaderLocal: what urlReader does without a network: data: URLs,
// schemes Pith does not fetch, and https's CA bundle on /usr, which must
// be there before any NIC comes up.
func TestURLReaderLocal(t *testing.T) {
	srv := httptest.NewTLSServer(nil)
	srv.Close()
	bundle := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	for _, tc := range []struct {
		name, url, bundle string // bundle: /usr's CA bundle, "" for none
		want, err         string
		lines             int // console lines
	}{
		{name: "data", url: "data:,%7B%22ignition%22%3A%7B%22version%22%3A%223.4.0%22%7D%7D", want: `{"ignition":{"version":"3.4.0"}}`},
		{name: "data base64", url: "data:;base64,e30=", want: "{}"},
		{name: "data empty", url: "data:,", lines: 1},
		{name: "data broken", url: "data:;base64,%%%", err: "invalid base64"},
		{name: "tftp", url: "tftp://10.0.0.1/c.ign", err: "Pith fetches http, https and data: config URLs only"},
		{name: "https without a CA bundle", url: "https://10.0.0.1/c.ign", err: "an https config URL needs a CA bundle, and this image's /usr has none (/usr/share/pith/etc/ssl/certs/ca-certificates.crt)"},
		{name: "https with an empty CA bundle", url: "https://10.0.0.1/c.ign", bundle: "# none\n", err: "holds no certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			usr := t.TempDir()
			if tc.bundle != "" {
				writeTree(t, usr, map[string]string{CABundle: tc.bundle})
			}
			var lines []string
			printf := func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }
			ud, where, err := urlReader(printf, tc.url, usr, time.Second)()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || string(ud) != tc.want || where != "" || len(lines) != tc.lines {
				t.Fatalf("read %q, %q, %v, lines %q; want %q and %d lines", ud, where, err, lines, tc.want, tc.lines)
			}
		})
	}
	// A bundle with a certificate is a pool (http needs none).
	usr := t.TempDir()
	writeTree(t, usr, map[string]string{CABundle: bundle})
	if pool, err := caRoots(usr, "https"); err != nil || pool == nil {
		t.Errorf("caRoots = %v, %v; want the bundle's pool", pool, err)
	}
	if pool, err := caRoots(filepath.Join(usr, "none"), "http"); err != nil || pool != nil {
		t.Errorf("caRoots for http = %v, %v; want none", pool, err)
	}
}
