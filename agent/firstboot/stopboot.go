package firstboot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/agent/datasource"
	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/cloudconfig/apply"
)

// EmergencyTarget is what a boot that could not apply its Ignition config
// isolates.
const EmergencyTarget = "emergency.target"

// StopLinePrefix begins the console line of a stopped boot (e2e waits for
// it); noStopPrefix that of a run without systemd (tests, image builds).
const (
	StopLinePrefix = "pithd firstboot: the boot stops here (" + EmergencyTarget + "), as Ignition's does: "
	noStopPrefix   = "pithd firstboot: systemd is not reachable, so the boot is not stopped as Ignition's would be: "
)

// BootStopper stops the boot: systemd (agent/units) isolating a target.
type BootStopper interface {
	Isolate(ctx context.Context, target string) error
}

// ignitionFailed reports whether st is an Ignition config that was not
// applied: invalid, a source not fetched, a hash that does not match, an
// apply error. Ignition stops the boot then, in the initramfs, so a
// machine never comes up without its config. A rejected #cloud-config or
// a failed #! script is not: the node boots on with the report, as
// coreos-cloudinit's did.
func ignitionFailed(st *apply.State) bool {
	return st != nil && st.Format == cloudconfig.FormatIgnition && !st.Applied
}

// unfetchedIgnition is the state of a first boot (not Now) whose source
// names an Ignition config that it could not give (err, a
// *datasource.IgnitionError: ignition.config.url unreachable, or not an
// Ignition config), which stops the boot; nil for any other error, or
// once first boot is done (Ignition runs on the first boot only).
func unfetchedIgnition(s *apply.Stage, err error, now bool) *apply.State {
	var ie *datasource.IgnitionError
	if now || !errors.As(err, &ie) {
		return nil
	}
	if done, derr := s.FirstBootDone(); derr != nil || done {
		return nil
	}
	return &apply.State{Time: time.Now().UTC(), FirstBoot: true, Source: ie.Source, Format: cloudconfig.FormatIgnition, Valid: true,
		ApplyErr: "not applied, nothing of this Ignition config was written: " + strings.ReplaceAll(ie.Err.Error(), "\n", "; ")}
}

// stopLine is the console line of a boot stopped for st; stopping says
// whether systemd is there to stop it.
func stopLine(root string, st *apply.State, stopping bool) string {
	reason := strings.TrimPrefix(st.ApplyErr, "not applied, nothing of this Ignition config was written: ")
	if !st.Valid {
		reason = invalidReason(st)
	}
	if i := strings.IndexByte(reason, '\n'); i >= 0 {
		reason = reason[:i] + " ..."
	}
	what := fmt.Sprintf("the Ignition config from %s was not applied (%s)", st.Source, reason)
	prefix := StopLinePrefix
	if !stopping {
		prefix = noStopPrefix
	}
	started := filepath.Join(apply.StateDir, apply.IgnitionStartedFile)
	if _, err := os.Stat(filepath.Join(root, started)); errors.Is(err, fs.ErrNotExist) {
		return prefix + what + "; nothing of it was written and first boot is not recorded, so the next boot runs it again from scratch: fix the config and reboot (pithctl userdata keeps this line)"
	}
	return prefix + what + "; its apply began (" + started + "), so the machine may be half-provisioned and no boot applies it again: reprovision it (pithctl userdata keeps this line)"
}

// stopBoot is a boot's run that could not apply its Ignition config: it
// says so in one line, records the line (apply.BootsStoppedFile, shown by
// pithctl userdata after the next boot too), then isolates
// emergency.target through sd so ssh.service and pithd.service never start
// (nil sd, no systemd: the line says the boot goes on). No race:
// pithd-firstboot.service is Before= both and systemd-user-sessions, so
// their start jobs still wait for this one, and the isolate replaces them.
func stopBoot(ctx context.Context, root string, st *apply.State, sd BootStopper, say func(Level, string, ...any)) error {
	line := stopLine(root, st, sd != nil)
	say(LevelError, "%s", line)
	recErr := apply.RecordBootStopped(root, time.Now(), line)
	if recErr != nil {
		say(LevelError, "pithd firstboot: recording the stopped boot: %v", recErr)
	}
	if sd == nil {
		return recErr
	}
	if err := sd.Isolate(ctx, EmergencyTarget); err != nil {
		say(LevelError, "pithd firstboot: could not stop the boot (isolate %s): %v", EmergencyTarget, err)
		return errors.Join(recErr, err)
	}
	return recErr
}

// invalidReason is the first error of an invalid config's report (the
// console has them all above).
func invalidReason(st *apply.State) string {
	for _, e := range st.Report {
		if e.Severity != cloudconfig.SeverityError {
			continue
		}
		r := "invalid: " + e.Message // Ignition's messages name the path
		if st.Errors > 1 {
			r += fmt.Sprintf(", and %d more error(s)", st.Errors-1)
		}
		return r
	}
	return fmt.Sprintf("invalid: %d error(s)", st.Errors)
}
