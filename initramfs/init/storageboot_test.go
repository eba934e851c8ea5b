package pithinit

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// The storage stage runs on every boot until it concludes: a stop before
// .started (a config that fails validation, an fw_cfg read error) stops
// the next boot too instead of letting it boot unprovisioned, and a
// concluded stage never runs again.
func TestStorageBoot(t *testing.T) {
	stop := &StopError{Msg: "Ignition storage (validating) failed"}
	type boot struct {
		stage   error  // what the stage returns when it runs
		runs    bool   // whether it runs
		stopped string // the boot's error, "" for none
	}
	// First boot marks the stage pending before ROOT counts as prepared.
	root := t.TempDir()
	writeTree(t, root, map[string]string{"usr/share/pith/etc/hostname": "pith\n"})
	if err := CreateSkeleton(root, filepath.Join(root, "usr")); err != nil {
		t.Fatal(err)
	}
	if !Initialized(root) || !exists(filepath.Join(root, StoragePending)) {
		t.Fatalf("after CreateSkeleton: initialized %v, pending %v", Initialized(root), exists(filepath.Join(root, StoragePending)))
	}
	for _, tc := range []struct {
		name  string
		setup []string // markers present before the first boot of the list
		boots []boot
	}{
		{"stop before .started stops every boot", []string{StoragePending}, []boot{
			{stop, true, "validating"}, {stop, true, "validating"}, {nil, true, ""}, {nil, false, ""},
		}},
		{"no storage concludes at once", []string{StoragePending}, []boot{{nil, true, ""}, {nil, false, ""}}},
		{"cut after .done", []string{StoragePending, StorageStarted, StorageDone}, []boot{{nil, false, ""}, {nil, false, ""}}},
		{"half-provisioned stops before the stage", []string{StoragePending, StorageStarted}, []boot{{nil, false, "half-provisioned"}, {nil, false, "half-provisioned"}}},
		{"a machine from before the marker", nil, []boot{{stop, false, ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, m := range tc.setup {
				if err := writeMarker(filepath.Join(root, m), ""); err != nil {
					t.Fatal(err)
				}
			}
			for i, b := range tc.boots {
				ran := false
				err := storageBoot(root, func() error { ran = true; return b.stage })
				if ran != b.runs {
					t.Errorf("boot %d: stage ran = %v, want %v", i+1, ran, b.runs)
				}
				var se *StopError
				if b.stopped == "" && err != nil || b.stopped != "" && (!errors.As(err, &se) || !strings.Contains(err.Error(), b.stopped)) {
					t.Errorf("boot %d: %v, want a stop %q", i+1, err, b.stopped)
				}
			}
		})
	}
}

// .started and .done are written only after a syncfs of ROOT (the mount
// units before .done must be on disk first) and synced themselves.
func TestDurableMarker(t *testing.T) {
	root := t.TempDir()
	unit := filepath.Join(root, "etc/systemd/system/data.mount")
	writeTree(t, root, map[string]string{"etc/systemd/system/data.mount": "[Mount]\n"})
	var seen []string
	old := syncFS
	syncFS = func(dir string) error {
		seen = append(seen, fmt.Sprintf("unit %v done %v", exists(unit), exists(filepath.Join(root, StorageDone))))
		return old(dir)
	}
	t.Cleanup(func() { syncFS = old })
	if err := durableMarker(root, StorageDone, "sum\n"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"unit true done false", "unit true done true"}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("syncs saw %q, want %q", seen, want)
	}
}

// With the fw_cfg device present, a driver that never shows its entries
// is an error (the config cannot be known), not a machine without one.
func TestWaitFwCfg(t *testing.T) {
	base := t.TempDir()
	acpi, dir := filepath.Join(base, "QEMU0002:00"), filepath.Join(base, "by_name")
	if err := waitFwCfg(acpi, dir, 0); err != nil {
		t.Errorf("no fw_cfg device: %v", err)
	}
	writeTree(t, base, map[string]string{"QEMU0002:00/path": "\\_SB_.FWCF\n"})
	if err := waitFwCfg(acpi, dir, 0); err == nil || !strings.Contains(err.Error(), "did not appear") {
		t.Errorf("device without entries: %v, want an error", err)
	}
	writeTree(t, base, map[string]string{"by_name/etc/raw": ""})
	if err := waitFwCfg(acpi, dir, 0); err != nil {
		t.Errorf("entries shown: %v", err)
	}
}
