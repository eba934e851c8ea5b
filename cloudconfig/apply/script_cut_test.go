package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig/apply/applytest"
)

// TestScriptCutFirstBoot: power is cut during first boot after the user-data
// script was started and before first boot was recorded as done. The next
// boot runs the script again only if it did not run to its end. The script's
// end is recorded by the unit's ExecStopPost, whose shell runs here for real.
func TestScriptCutFirstBoot(t *testing.T) {
	script := "#!/bin/sh\necho first boot\n"
	sum := sha256.Sum256([]byte(script))
	hash := hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		name     string
		exitCode string // systemd's EXIT_CODE for ExecStopPost; "" = the cut came while it ran
		runAgain bool
	}{
		{"script ended", "exited", false},
		{"script killed by the cut", "killed", true},
		{"cut while the script ran", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stage, rec, root := newStage(t)
			if _, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(script)}); err != nil {
				t.Fatal(err)
			}
			unit := applytest.Read(t, filepath.Join(root, "run/systemd/system", scriptUnit))
			want := "ExecStopPost=/bin/sh -c '" + strings.ReplaceAll(scriptDoneShell(ScriptDonePath, hash), "$", "$$") + "'"
			if !strings.Contains(unit, want) || !strings.Contains(unit, "$${EXIT_CODE}") {
				t.Fatalf("unit does not record the script's end:\n%s", unit)
			}
			if tc.exitCode != "" {
				cmd := exec.Command("/bin/sh", "-c", scriptDoneShell(filepath.Join(root, ScriptDonePath), hash))
				cmd.Env = append(os.Environ(), "EXIT_CODE="+tc.exitCode)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("ExecStopPost shell: %v: %s", err, out)
				}
			}
			// The cut: first boot not recorded as done.
			if err := os.Remove(filepath.Join(root, StateDir, FirstBootFile)); err != nil {
				t.Fatal(err)
			}
			rec.Calls = nil
			if _, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(script)}); err != nil {
				t.Fatal(err)
			}
			if ran := slices.Contains(rec.Calls, "start "+scriptUnit); ran != tc.runAgain {
				t.Fatalf("script started again: %v, want %v (calls %v)", ran, tc.runAgain, rec.Calls)
			}
			if done, _ := stage.FirstBootDone(); !done {
				t.Error("first boot not recorded as done on the boot after the cut")
			}
			if ents, _ := os.ReadDir(filepath.Join(root, StateDir)); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasSuffix(e.Name(), ".tmp") }) {
				t.Errorf("temporary files left in %s", StateDir)
			}
		})
	}
	// A changed script is a new script: it runs despite the old one's record.
	stage, rec, root := newStage(t)
	os.MkdirAll(filepath.Join(root, StateDir), 0o755)
	os.WriteFile(filepath.Join(root, ScriptDonePath), []byte(hash+"\n"), 0o644)
	if _, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(script + "echo more\n")}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rec.Calls, "start "+scriptUnit) {
		t.Errorf("a changed script did not run: %v", rec.Calls)
	}
}
