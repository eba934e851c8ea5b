package apply

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/cloudconfig/apply/applytest"
)

// TestAgentSecretsFile: credentials from user-data (fleet's etcd_password,
// the discovery URL with its token) land only in a 0600 EnvironmentFile,
// never in the drop-in systemd shows to every user; a secrets file left
// 0644 by an older pith is made 0600, and one no longer needed is removed.
func TestAgentSecretsFile(t *testing.T) {
	stage, _, root := newStage(t)
	a := stage.Applier
	apply := func(ud string) {
		t.Helper()
		c, rep := cloudconfig.ParseCloudConfig([]byte(ud))
		if c == nil || rep.HasErrors() {
			t.Fatalf("parse: %v", rep)
		}
		if err := a.ApplyCloudConfig(context.Background(), c, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	dropIn, secrets := filepath.Join(root, AgentDropIn), filepath.Join(root, AgentSecretsFile)
	// An older pith's world-readable file with stale content.
	if err := os.MkdirAll(filepath.Dir(secrets), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secrets, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const discovery = "http://10.0.2.2:8087/v2/keys/_etcd/registry/0123456789abcdef0123456789abcdef"
	apply(`#cloud-config
coreos:
  etcd2:
    name: node1
    discovery: ` + discovery + `
  fleet:
    etcd_password: "s3cr\"et"
    public_ip: 10.0.0.1
`)
	applytest.CheckFile(t, secrets, 0o600, 0, "# Written by pithd firstboot from user-data (mode 0600); rewritten every boot.\n"+
		"ETCD_DISCOVERY=\""+discovery+"\"\nFLEET_ETCD_PASSWORD=\"s3cr\\\"et\"\n")
	d := applytest.Read(t, dropIn)
	st, err := os.Stat(dropIn)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(d, "s3cr") || strings.Contains(d, "0123456789abcdef") || !strings.Contains(d, "EnvironmentFile="+AgentSecretsFile+"\n") ||
		!strings.Contains(d, `Environment="ETCD_NAME=node1"`) || st.Mode() != 0o644 {
		t.Errorf("drop-in (%v):\n%s", st.Mode(), d)
	}

	// Without credentials: no secrets file, no EnvironmentFile line.
	apply("#cloud-config\ncoreos:\n  etcd2:\n    name: node1\n")
	if _, err := os.Stat(secrets); !os.IsNotExist(err) {
		t.Errorf("secrets file kept: %v", err)
	}
	if d := applytest.Read(t, dropIn); strings.Contains(d, "EnvironmentFile") {
		t.Errorf("drop-in still names the secrets file:\n%s", d)
	}
}

// TestPrivateKeyFilesDefault0600: a private key written by write_files or
// Ignition without a mode is 0600 (a certificate stays 0644); a mode the
// user gave is kept.
func TestPrivateKeyFilesDefault0600(t *testing.T) {
	const key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"
	const cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	indent := func(s string) string {
		return "      " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n      ") + "\n"
	}
	ud := "#cloud-config\nwrite_files:\n" +
		"  - path: /etc/pith/tls/member.key\n    content: |\n" + indent(key) +
		"  - path: /etc/pith/tls/member.crt\n    content: |\n" + indent(cert) +
		"  - path: /etc/pith/tls/shared.key\n    permissions: '0640'\n    content: |\n" + indent(key)
	stage, _, root := newStage(t)
	if _, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(ud)}); err != nil {
		t.Fatal(err)
	}
	applytest.CheckFile(t, filepath.Join(root, "etc/pith/tls/member.key"), 0o600, 0, key)
	applytest.CheckFile(t, filepath.Join(root, "etc/pith/tls/member.crt"), 0o644, 0, cert)
	applytest.CheckFile(t, filepath.Join(root, "etc/pith/tls/shared.key"), 0o640, 0, key)

	ign := `{"ignition":{"version":"3.4.0"},"storage":{"files":[` +
		`{"path":"/etc/ign.key","contents":{"source":"data:,` + url.PathEscape(key) + `"}},` +
		`{"path":"/etc/ign.crt","contents":{"source":"data:,` + url.PathEscape(cert) + `"}}]}}`
	stage, _, root = newStage(t)
	if _, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(ign)}); err != nil {
		t.Fatal(err)
	}
	applytest.CheckFile(t, filepath.Join(root, "etc/ign.key"), 0o600, 0, key)
	applytest.CheckFile(t, filepath.Join(root, "etc/ign.crt"), 0o644, 0, cert)
}
