package firstboot

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/agent/datasource"
	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/cloudconfig/apply"
)

// Level is how important a message of Boot is (the journal's priority in
// pithd).
type Level int

// Levels of Boot's messages.
const (
	LevelInfo Level = iota
	LevelNotice
	LevelWarning
	LevelError
)

// BootOptions say how to run the first-boot stage.
type BootOptions struct {
	Datasource datasource.Config
	// UseSaved re-applies the saved user-data on later boots without a
	// datasource.
	UseSaved bool
	// Now is an operator's "apply now" (pithctl userdata apply): the
	// user-data is applied in full, as on first boot, whatever boot this is.
	Now bool
	// Say reports progress (console and journal in pithd).
	Say func(l Level, format string, args ...any)
}

// BootResult is what Boot did.
type BootResult struct {
	OEM      *apply.State // nil without an OEM cloud-config
	UserData *apply.State // nil while waiting
	// Waiting names the datasource the node waits for ("" if none).
	Waiting string
	// AgentChanged: pithd's settings (its drop-in) changed, so a running
	// pithd must restart to use them.
	AgentChanged bool
	// Changes lists what was changed on the system, in order.
	Changes []string
	// StopBoot: a boot's run (not Now) could not apply an Ignition
	// config, so the boot must stop (Run isolates emergency.target).
	StopBoot bool
}

// laterBootURLWait bounds the retries of ignition.config.url once first
// boot is done.
var laterBootURLWait = 5 * time.Second

// waitsForUserData reports the datasource whose user-data arrives only
// after boot on this platform.
func waitsForUserData(cfg datasource.Config, root string) string {
	p := cfg.Platform()
	if p == "" {
		p = datasource.OEMPlatformID(root)
	}
	switch strings.ToLower(p) {
	case "vagrant", "vagrant-virtualbox", "vagrant-libvirt":
		return "vagrant"
	}
	return ""
}

// Boot runs the first-boot stage: the OEM partition's cloud-config, then
// the user-data of the first datasource present. One run at a time per
// node (a lock under StateDir), so pithctl userdata apply and the boot
// unit never interleave.
func Boot(ctx context.Context, s *apply.Stage, o BootOptions) (*BootResult, error) {
	say := o.Say
	if say == nil {
		say = func(Level, string, ...any) {}
	}
	root := s.Applier.Root
	if o.Datasource.Root == "" {
		o.Datasource.Root = root
	}
	unlock, err := apply.LockState(root)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s.Applier.TakeChanges()
	agentBefore := s.AgentConfig()
	res := &BootResult{}
	var errs []error

	// OEM first, as coreos-cloudinit applied it before user-data.
	oem, err := (&datasource.OEM{Root: o.Datasource.Root, Cmdline: o.Datasource.Cmdline}).Fetch()
	switch {
	case errors.Is(err, datasource.ErrNotFound):
	case err != nil:
		say(LevelError, "OEM cloud-config: %v", err)
		errs = append(errs, err)
	default:
		st, err := s.RunOEM(ctx, oem.UserData)
		res.OEM = st
		if st != nil {
			for _, e := range st.Report {
				say(levelOf(e.Severity), "%s/%s:%s", apply.StateDir, apply.OEMUserDataFile, e.String())
			}
		}
		if err != nil {
			say(LevelError, "%v", err)
			errs = append(errs, err)
		} else {
			say(LevelInfo, "OEM cloud-config (%s) applied; in full: %v", filepath.Join(datasource.OEMDir, datasource.OEMCloudConfig), st.FirstBoot)
		}
	}

	ds, err := fetchUserData(ctx, s, o)
	var st *apply.State
	switch {
	case errors.Is(err, datasource.ErrNotFound):
		done, derr := s.FirstBootDone()
		if derr != nil {
			return res, errors.Join(append(errs, derr)...)
		}
		if w := waitsForUserData(o.Datasource, root); w != "" && !done {
			res.Waiting = w
			say(LevelNotice, "no user-data yet; waiting for the %s datasource (pithd.service starts once it is applied: vagrant provision, or pithctl userdata apply)", w)
			if _, err := s.RecordWaiting(w); err != nil {
				errs = append(errs, err)
			}
			if err := s.SetWait(ctx, true); err != nil {
				errs = append(errs, err)
			}
			res.Changes = s.Applier.TakeChanges()
			return res, errors.Join(errs...)
		}
		if done && o.UseSaved {
			say(LevelInfo, "no datasource found; re-applying the user-data saved at first boot")
			st, err = s.RunSaved(ctx)
		} else {
			say(LevelNotice, "%v; booting without user-data", err)
			st, err = s.Run(ctx, apply.Input{Source: "none", Full: o.Now})
		}
	case err != nil: // booting on, unless Ignition's fetch would stop it
		res.UserData = unfetchedIgnition(s, err, o.Now)
		format := "%v; booting without user-data"
		if res.StopBoot = res.UserData != nil; res.StopBoot {
			format = "%v"
		}
		say(LevelError, format, err)
		return res, errors.Join(append(errs, err)...)
	default:
		note := ""
		if ds.Note != "" {
			note = ", " + ds.Note
		}
		say(LevelInfo, "user-data from %s (%d bytes%s)", ds.Source, len(ds.UserData), note)
		in := apply.Input{
			Source: ds.Source, UserData: ds.UserData, Metadata: ds.Metadata,
			Addresses: ds.Metadata.Addresses(), SSHKeys: ds.Metadata.SSHPublicKeys, Hostname: ds.Metadata.Hostname,
			Full: o.Now,
		}
		// A file replaces the user-data only: the machine's addresses,
		// keys and hostname stay those its datasource gave.
		if ds.Source == (&datasource.File{}).Name() {
			if prev, err := apply.ReadState(root); err == nil {
				in.Addresses, in.SSHKeys, in.Hostname = prev.Addresses, prev.SSHKeys, prev.Hostname
			}
		}
		st, err = s.Run(ctx, in)
	}
	res.UserData = st
	res.StopBoot = !o.Now && ignitionFailed(st)
	if st != nil {
		for _, e := range st.Report {
			say(levelOf(e.Severity), "%s/%s:%s", apply.StateDir, apply.UserDataFile, e.String())
		}
	}
	if err != nil {
		say(LevelError, "%v", err)
		errs = append(errs, err)
	} else {
		say(LevelInfo, "user-data (%s) applied; first boot: %v", st.Format, st.FirstBoot)
	}
	if done, _ := s.FirstBootDone(); done {
		if werr := s.SetWait(ctx, false); werr != nil {
			errs = append(errs, werr)
		}
	}
	res.AgentChanged = !bytes.Equal(agentBefore, s.AgentConfig())
	res.Changes = s.Applier.TakeChanges()
	return res, errors.Join(errs...)
}

// fetchUserData finds the user-data (datasource.Fetch). Ignition runs on
// first boot only: once that is done, an ignition.config.url is tried for
// laterBootURLWait, so a provisioning server gone since does not hold
// every later boot for Ignition's two minutes.
func fetchUserData(ctx context.Context, s *apply.Stage, o BootOptions) (*datasource.Result, error) {
	cfg := o.Datasource
	if done, _ := s.FirstBootDone(); done && !o.Now && cfg.IgnitionURLWait == 0 {
		cfg.IgnitionURLWait = laterBootURLWait
	}
	return datasource.Fetch(ctx, cfg)
}

func levelOf(severity cloudconfig.Severity) Level {
	if severity == cloudconfig.SeverityError {
		return LevelError
	}
	return LevelWarning
}
