package apply

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/node"
)

func TestCheckStorageApplied(t *testing.T) {
	withStorage := []byte(`{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[{"device":"/dev/vdb","format":"ext4","path":"/srv"}]}}`)
	without := []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/a"}]}}`)
	// A filesystem entry without a format only names a device: the
	// initramfs has nothing to apply and writes no marker.
	formatless := []byte(`{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[{"device":"/dev/vdb"}],"files":[{"path":"/etc/a"}]}}`)
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) + "\n" }
	for _, tc := range []struct {
		name   string
		data   []byte
		marker string // "" = none
		errs   bool
	}{
		{"storage applied by the initramfs", withStorage, sum(withStorage), false},
		{"no marker: another datasource", withStorage, "", true},
		{"marker of another config", withStorage, sum(without), true},
		{"no storage, no marker", without, "", false},
		{"format-less filesystem only, no marker", formatless, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.marker != "" {
				p := filepath.Join(root, node.StorageDoneMarker)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(tc.marker), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ud, rep := cloudconfig.Parse(tc.data)
			if rep.HasErrors() {
				t.Fatalf("config invalid: %s", rep.Format("x"))
			}
			checkStorageApplied(root, "ec2", tc.data, ud, rep)
			if rep.HasErrors() != tc.errs {
				t.Fatalf("errors = %v, want %v:\n%s", rep.HasErrors(), tc.errs, rep.Format("x"))
			}
			if tc.errs && !strings.Contains(rep.Format("x"), "came from ec2") {
				t.Errorf("the error does not name the source:\n%s", rep.Format("x"))
			}
		})
	}
}
