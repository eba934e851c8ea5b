package firstboot

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/cloudconfig/apply"
)

// wrongHashIgnition has a data: file whose verification hash is not its
// contents'.
var wrongHashIgnition = `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/checked",
  "contents":{"source":"data:,fetched","verification":{"hash":"` + fmt.Sprintf("sha512-%x", sha512.Sum512([]byte("other"))) + `"}}}]}}`

// TestBootStopBoot: only a boot's run (not --now) whose Ignition config was
// not applied must stop the boot; a rejected #cloud-config or a failed
// script lets the node boot on, as before.
func TestBootStopBoot(t *testing.T) {
	for _, tc := range []struct {
		name, userData, fail string // fail: the Recorder call that fails
		now, failed, stop    bool
		reason               string // in the stop line
	}{
		{name: "ignition wrong hash at boot", userData: wrongHashIgnition, failed: true, stop: true,
			reason: "(invalid: ignition config: storage.files.0.contents.verification.hash: contents have the wrong sha512 sum: verification.hash expects "},
		{name: "ignition invalid at boot", userData: `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"relative"},{"path":"rel2"}]}}`, failed: true, stop: true,
			reason: "(invalid: Ignition: storage.files.0.path: path not absolute, and 1 more error(s));"},
		{name: "ignition wrong hash with --now", userData: wrongHashIgnition, now: true, failed: true},
		{name: "ignition applied", userData: `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/ok","contents":{"source":"data:,ok"}}]}}`},
		{name: "cloud-config rejected", userData: "#cloud-config\nwrite_files:\n  - path: relative\n", failed: true},
		{name: "cloud-config apply error", userData: "#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      command: start\n      content: \"[Service]\\nExecStart=/bin/true\\n\"\n", fail: "start a.service", failed: true},
		{name: "script fails to start", userData: "#!/bin/sh\ntrue\n", fail: "start pith-user-data-script.service", failed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stage, rec, root := newStage(t)
			rec.Fail = tc.fail
			ud := filepath.Join(t.TempDir(), "user-data")
			writeTestFile(t, ud, tc.userData)
			res, err := Boot(context.Background(), stage, BootOptions{Datasource: bootConfig(root, "pith.platform=qemu", ud), Now: tc.now})
			if (err != nil) != tc.failed || res == nil {
				t.Fatalf("error %v, want failure %v", err, tc.failed)
			}
			if res.StopBoot != tc.stop {
				t.Errorf("StopBoot %v, want %v (state %+v)", res.StopBoot, tc.stop, res.UserData)
			}
			if line := stopLine(root, res.UserData, true); tc.stop && !strings.Contains(line, tc.reason) {
				t.Errorf("the line lacks %q: %s", tc.reason, line)
			}
		})
	}
}

// fakeStopper records the targets isolated.
type fakeStopper struct {
	isolated []string
	err      error
}

func (f *fakeStopper) Isolate(_ context.Context, target string) error {
	f.isolated = append(f.isolated, target)
	return f.err
}

// TestStopBoot: the one console line says what failed, that the boot stops
// and what to do; it is recorded for pithctl userdata; emergency.target is
// isolated once, and not at all without systemd (where the line says the
// boot goes on). A half-applied config's line says so instead of "nothing
// written".
func TestStopBoot(t *testing.T) {
	st := &apply.State{Source: "qemu", Format: cloudconfig.FormatIgnition, Valid: true,
		ApplyErr: "not applied, nothing of this Ignition config was written: file /etc/checked: contents have the wrong sha512 sum"}
	const what = "the Ignition config from qemu was not applied (file /etc/checked: contents have the wrong sha512 sum); "
	const fresh = "nothing of it was written and first boot is not recorded, so the next boot runs it again from scratch: fix the config and reboot (pithctl userdata keeps this line)"
	for _, tc := range []struct {
		name        string
		sd          *fakeStopper
		halfApplied bool
		want        string // the line
		wantErr     bool
	}{
		{"systemd", &fakeStopper{}, false, StopLinePrefix + what + fresh, false},
		{"no systemd", nil, false, noStopPrefix + what + fresh, false},
		{"half applied", &fakeStopper{}, true, StopLinePrefix + what + "its apply began (/var/lib/pith/ignition-apply.started), so the machine may be half-provisioned and no boot applies it again: reprovision it (pithctl userdata keeps this line)", false},
		{"isolate fails", &fakeStopper{err: errors.New("no bus")}, false, StopLinePrefix + what + fresh, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.halfApplied {
				writeTestFile(t, filepath.Join(root, apply.StateDir, apply.IgnitionStartedFile), "2026-12-04T05:00:00Z\n")
			}
			var said []string
			say := func(l Level, f string, a ...any) {
				if l != LevelError {
					t.Errorf("level %v, want error", l)
				}
				said = append(said, strings.ReplaceAll(f, "%s", a[0].(string)))
			}
			var sd BootStopper
			if tc.sd != nil {
				sd = tc.sd
			}
			err := stopBoot(context.Background(), root, st, sd, say)
			if (err != nil) != tc.wantErr {
				t.Errorf("error %v, want one: %v", err, tc.wantErr)
			}
			if len(said) == 0 || said[0] != tc.want {
				t.Errorf("said %q\nwant %q", said, tc.want)
			}
			if tc.sd != nil && (len(tc.sd.isolated) != 1 || tc.sd.isolated[0] != EmergencyTarget) {
				t.Errorf("isolated %q, want %s once", tc.sd.isolated, EmergencyTarget)
			}
			lines, err := apply.ReadBootsStopped(root)
			if err != nil || len(lines) != 1 || !strings.HasSuffix(lines[0], " "+tc.want) {
				t.Errorf("recorded %q, %v; want the line", lines, err)
			}
		})
	}
}
