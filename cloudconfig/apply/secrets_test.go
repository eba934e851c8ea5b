package apply

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
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
	checkFile(t, secrets, 0o600, 0, "# Written by pithd firstboot from user-data (mode 0600); rewritten every boot.\n"+
		"ETCD_DISCOVERY=\""+discovery+"\"\nFLEET_ETCD_PASSWORD=\"s3cr\\\"et\"\n")
	d := read(t, dropIn)
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
	if d := read(t, dropIn); strings.Contains(d, "EnvironmentFile") {
		t.Errorf("drop-in still names the secrets file:\n%s", d)
	}
}
