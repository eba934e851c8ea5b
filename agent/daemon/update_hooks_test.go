package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
)

// TestReadRebootHooks: the hooks user-data sets reach the updater through
// the settings file firstboot writes.
func TestReadRebootHooks(t *testing.T) {
	c, rep := cloudconfig.ParseCloudConfig([]byte("#cloud-config\npith:\n  update:\n    pre-reboot: [kubectl drain n1]\n    post-reboot: [kubectl uncordon n1, 'echo done']\n"))
	if rep.HasErrors() {
		t.Fatal(rep.Format("user-data"))
	}
	b, err := json.Marshal(c.Settings())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "settings.json")
	os.WriteFile(p, b, 0o600)
	h, err := readRebootHooks(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h.PreReboot, []string{"kubectl drain n1"}) || !reflect.DeepEqual(h.PostReboot, []string{"kubectl uncordon n1", "echo done"}) {
		t.Fatalf("hooks %+v", h)
	}
	if h, err := readRebootHooks(filepath.Join(t.TempDir(), "none.json")); err != nil || len(h.PreReboot)+len(h.PostReboot) != 0 {
		t.Fatalf("no settings file: %+v %v", h, err)
	}
	os.WriteFile(p, []byte("{"), 0o600)
	if _, err := readRebootHooks(p); err == nil {
		t.Fatal("a corrupt settings file was accepted")
	}
}
