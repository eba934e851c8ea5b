package firstboot

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestBootIgnitionURL: an ignition.config.url that cannot give an
// Ignition config (no answer, 404, a cloud-config) stops the first boot
// as one that cannot be applied does, with the reason in the line; not
// with --now, not once first boot is done (Ignition runs once), and
// never for pith.config.url, which boots on as before.
func TestBootIgnitionURL(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok.ign":
			w.Write([]byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/ok","contents":{"source":"data:,ok"}}]}}`))
		case "/cloud.yaml":
			w.Write([]byte("#cloud-config\nhostname: a\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	defer func(w time.Duration) { laterBootURLWait = w }(laterBootURLWait)
	laterBootURLWait = 300 * time.Millisecond
	for _, tc := range []struct {
		name, cmdline string
		now, done     bool // --now; first boot already done
		failed, stop  bool
		reason        string        // in the stop line
		wait          time.Duration // IgnitionURLWait: 0 is 200ms, -1 none
	}{
		{name: "applied", cmdline: "ignition.config.url=" + ts.URL + "/ok.ign"},
		{name: "404", cmdline: "ignition.config.url=" + ts.URL + "/missing.ign", failed: true, stop: true,
			reason: "the Ignition config from ignition-url was not applied (GET " + ts.URL + "/missing.ign: 404 Not Found); nothing of it was written"},
		{name: "a cloud-config", cmdline: "ignition.config.url=" + ts.URL + "/cloud.yaml", failed: true, stop: true, reason: "is not an Ignition config (it reads as cloud-config)"},
		{name: "no answer", cmdline: "ignition.config.url=http://127.0.0.1:1/c.ign", failed: true, stop: true, reason: "no answer within 200ms"},
		{name: "404 with --now", cmdline: "ignition.config.url=" + ts.URL + "/missing.ign", now: true, failed: true},
		{name: "404 after first boot", cmdline: "ignition.config.url=" + ts.URL + "/missing.ign", done: true, failed: true},
		{name: "pith.config.url 404 boots on", cmdline: "pith.config.url=" + ts.URL + "/missing.ign", failed: true},
		// Without a wait set: the later boot's short one, not Ignition's 2 minutes.
		{name: "no answer after first boot", cmdline: "ignition.config.url=http://127.0.0.1:1/c.ign", done: true, failed: true, wait: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stage, _, root := newStage(t)
			if tc.done {
				writeTestFile(t, filepath.Join(root, apply.StateDir, apply.FirstBootFile), "2026-12-04T05:00:00Z\n")
			}
			cfg := bootConfig(root, tc.cmdline, "")
			cfg.IgnitionURLWait = 200 * time.Millisecond
			if tc.wait < 0 {
				cfg.IgnitionURLWait = 0
			}
			start := time.Now()
			res, err := Boot(context.Background(), stage, BootOptions{Datasource: cfg, Now: tc.now})
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("Boot took %v", el)
			}
			if (err != nil) != tc.failed || res == nil {
				t.Fatalf("error %v, want failure %v", err, tc.failed)
			}
			if res.StopBoot != tc.stop {
				t.Fatalf("StopBoot %v, want %v (state %+v)", res.StopBoot, tc.stop, res.UserData)
			}
			if !tc.stop {
				return
			}
			if line := stopLine(root, res.UserData, true); !strings.HasPrefix(line, StopLinePrefix) || !strings.Contains(line, tc.reason) || strings.Contains(line, "\n") {
				t.Errorf("the line lacks %q: %s", tc.reason, line)
			}
		})
	}
}
