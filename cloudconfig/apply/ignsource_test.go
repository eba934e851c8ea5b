package apply

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/node"
)

// When the initramfs applied storage or kernel arguments from one
// source's config and pithd took another's, the first boot says so,
// naming both; the same config (gzipped or not) or no marker says nothing.
func TestNoticeInitramfsSource(t *testing.T) {
	cfg := []byte(`{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[{"device":"/dev/vdb","format":"swap"}]}}`)
	other := []byte("#cloud-config\nhostname: a\n")
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(cfg)
	w.Close()
	s := sha256.Sum256(cfg)
	marker := "config-drive " + hex.EncodeToString(s[:]) + "\n"
	for _, tc := range []struct {
		name, marker string
		userData     []byte
		want         string
	}{
		{"another config", marker, other, `first boot: the initramfs applied the kernel arguments and storage of the Ignition config from config-drive, but pithd took its user-data from ec2, a different config (ec2 comes first in pithd's order and the initramfs did not read it): the disks and kernel line stay as config-drive's config made them; ec2's own storage and kernelArguments cannot be applied after boot" initramfs_source=config-drive source=ec2`},
		{"the same source, another answer", "ec2 " + hex.EncodeToString(s[:]) + "\n", other, `first boot: the initramfs applied the kernel arguments and storage of the Ignition config from ec2, but ec2 answered pithd a different config: the disks and kernel line stay as the initramfs's fetch made them; the later answer's own storage and kernelArguments cannot be applied after boot" initramfs_source=ec2 source=ec2`},
		{"the same config", marker, cfg, ""},
		{"the same config, gzipped", marker, gz.Bytes(), ""},
		{"no marker", "", other, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.marker != "" {
				p := filepath.Join(root, node.IgnitionSourceMarker)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(tc.marker), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}}))
			noticeInitramfsSource(root, "ec2", tc.userData, log)
			got := strings.TrimSpace(out.String())
			if tc.want == "" && got != "" || tc.want != "" && !strings.HasSuffix(got, tc.want) || tc.want != "" && !strings.HasPrefix(got, "level=WARN") {
				t.Fatalf("logged\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// The refusals say why a config missed the initramfs: EC2's because the
// service did not answer (or was not tried), pith.config.url's because
// only pithd has the network, ignition.config.url's because its answer
// changed.
func TestInitramfsSources(t *testing.T) {
	for _, tc := range []struct{ source, want, not string }{
		{"ec2", "this config came from ec2, which the initramfs did not reach (no DHCP lease or no answer within its wait", "needs pithd's network"},
		{"kernel-url", "this config came from kernel-url (pith.config.url or DigitalOcean's metadata service needs pithd's network)", "did not reach"},
		{"ignition-url", "this config came from ignition-url, which answered the initramfs another config (or none) than it answered pithd", "needs pithd's network"},
		{"digitalocean", "came from digitalocean (", "did not reach"},
	} {
		got := initramfsSources(tc.source)
		if !strings.Contains(got, tc.want) || strings.Contains(got, tc.not) || !strings.Contains(got, "pith.platform=ec2 on the kernel line, EC2's metadata service") {
			t.Errorf("initramfsSources(%q) = %q", tc.source, got)
		}
	}
}
