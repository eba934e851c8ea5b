package apply

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIgnitionRunsOnce: an Ignition config that fails half-way (its unit
// cannot be started, after its file was written) is not applied again on
// the next boot as if the machine were fresh; a config that fails its
// checks (nothing written) is; pithctl userdata apply (Full) goes over a
// half-applied one.
func TestIgnitionRunsOnce(t *testing.T) {
	const unit = `{"name":"a.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}`
	for _, tc := range []struct {
		name      string
		cfg       string
		fail      string // Recorder call that fails on the first boot
		existing  bool   // /etc/f exists on the first boot (overwrite conflict), not on the second
		firstErr  string
		secondErr string // "" = the second boot applies it
	}{
		{name: "half-applied", fail: "start a.service",
			cfg:      `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/f","contents":{"source":"data:,f"}}]},"systemd":{"units":[` + unit + `]}}`,
			firstErr: "injected failure", secondErr: "did not finish"},
		{name: "failed its checks", existing: true,
			cfg:      `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/f","contents":{"source":"data:,f"}}]},"systemd":{"units":[` + unit + `]}}`,
			firstErr: "overwrite is not true", secondErr: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stage, rec, root := newStage(t)
			marker := filepath.Join(root, StateDir, IgnitionStartedFile)
			rec.Fail = tc.fail
			if tc.existing {
				if err := os.WriteFile(filepath.Join(root, "etc/f"), []byte("old"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			in := Input{Source: "test", UserData: []byte(tc.cfg)}
			_, err := stage.Run(context.Background(), in)
			if tc.firstErr != "" && (err == nil || !strings.Contains(err.Error(), tc.firstErr)) {
				t.Fatalf("first boot: err %v, want %q", err, tc.firstErr)
			}
			if done, _ := stage.FirstBootDone(); done != (err == nil) {
				t.Fatalf("first boot done %v after err %v", done, err)
			}
			if err == nil {
				return // nothing to retry
			}
			_, statErr := os.Stat(marker)
			if (statErr == nil) != (tc.secondErr != "") {
				t.Errorf("marker present %v, want %v", statErr == nil, tc.secondErr != "")
			}

			// The next boot, systemd working again.
			rec.Fail, rec.Calls = "", nil
			os.Remove(filepath.Join(root, "etc/f"))
			_, err = stage.Run(context.Background(), in)
			if tc.secondErr == "" {
				if err != nil {
					t.Fatalf("second boot: %v", err)
				}
				if done, _ := stage.FirstBootDone(); !done || !strings.Contains(strings.Join(rec.Calls, ","), "start a.service") {
					t.Errorf("second boot: done %v, calls %v", done, rec.Calls)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.secondErr) || len(rec.Calls) != 0 {
				t.Fatalf("second boot: err %v, calls %v; want %q and nothing applied", err, rec.Calls, tc.secondErr)
			}
			// pithctl userdata apply: the operator goes over it.
			in.Full = true
			if _, err := stage.Run(context.Background(), in); err != nil {
				t.Fatalf("full apply: %v", err)
			}
			if done, _ := stage.FirstBootDone(); !done || !strings.Contains(strings.Join(rec.Calls, ","), "start a.service") {
				t.Errorf("full apply: done %v, calls %v", done, rec.Calls)
			}
		})
	}
}
