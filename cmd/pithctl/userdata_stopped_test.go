package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/cloudconfig/apply"
)

// TestUserdataBootsStopped: after a boot stopped by an Ignition config
// that could not be applied and a reboot into a fixed one, pithctl
// userdata says the config is applied and still lists the stopped boot.
func TestUserdataBootsStopped(t *testing.T) {
	root := t.TempDir()
	b, err := json.Marshal(apply.State{Source: "qemu", Format: cloudconfig.FormatIgnition, Valid: true, Applied: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, apply.StateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, apply.StateDir, apply.StateFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// pithctl status's tests leave the subcommand its own writer.
	if c, _, err := rootCmd.Find([]string{"userdata"}); err == nil {
		c.SetOut(nil)
		c.SetErr(nil)
	}
	out, err := runCtl(t, "userdata", "--root", root, "--format", "text")
	if err != nil || !strings.Contains(out, "status:     applied") || strings.Contains(out, "boots stopped") {
		t.Fatalf("before any stopped boot: %v\n%s", err, out)
	}
	const line = "pithd firstboot: the boot stops here (emergency.target), as Ignition's does: ..."
	if err := apply.RecordBootStopped(root, time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC), line); err != nil {
		t.Fatal(err)
	}
	out, err = runCtl(t, "userdata", "--root", root, "--format", "text")
	want := "boots stopped (/var/lib/pith/boots-stopped):\n  2026-12-04T05:00:00Z " + line + "\n"
	if err != nil || !strings.Contains(out, "status:     applied") || !strings.HasSuffix(out, want) {
		t.Errorf("%v\n%s\nwant it to end with:\n%s", err, out, want)
	}
}
