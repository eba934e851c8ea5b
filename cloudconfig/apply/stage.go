package apply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/node/crashpoint"
)

// StateDir and the files under it are node's (pithd and pithctl read
// them too).
const (
	StateDir      = node.StateDir
	UserDataFile  = node.UserDataFile
	MetadataFile  = node.MetadataFile
	ReportFile    = node.ReportFile
	StateFile     = node.StateFile
	FirstBootFile = node.FirstBootFile
	SettingsFile  = node.SettingsFile
)

// Input is what the datasource found.
type Input struct {
	Source    string
	UserData  []byte
	Metadata  any // saved as JSON (datasource.Metadata)
	Addresses cloudconfig.Addresses
	SSHKeys   []string
	Hostname  string // the datasource's, used when user-data sets none
	// Full applies everything, as on first boot, on a node whose first
	// boot is done (pithctl userdata apply). A script runs again only if
	// it changed.
	Full bool
}

// State records a run of the stage; `pithctl status` shows it.
type State struct {
	Time      time.Time             `json:"time"`
	FirstBoot bool                  `json:"first_boot"`
	Source    string                `json:"source"`
	Format    cloudconfig.Format    `json:"format"`
	SHA256    string                `json:"sha256"`
	Valid     bool                  `json:"valid"`
	Applied   bool                  `json:"applied"`
	Errors    int                   `json:"errors"`
	Warnings  int                   `json:"warnings"`
	Report    []cloudconfig.Entry   `json:"report,omitempty"`
	ApplyErr  string                `json:"apply_error,omitempty"`
	Addresses cloudconfig.Addresses `json:"addresses"`
	SSHKeys   []string              `json:"ssh_keys,omitempty"`
	Hostname  string                `json:"metadata_hostname,omitempty"`
	// Waiting names the datasource the node waits for (Vagrant uploads
	// user-data after boot); pithd.service does not start until then.
	Waiting string `json:"waiting_for,omitempty"`
}

// InvalidError is returned when user-data is rejected: nothing was applied.
type InvalidError struct {
	Source string
	Report *cloudconfig.Report
	// ReportFile is the report's name under StateDir (default ReportFile).
	ReportFile string
}

func (e *InvalidError) Error() string {
	n, w := e.Report.Count()
	f := e.ReportFile
	if f == "" {
		f = ReportFile
	}
	what := "user-data from " + e.Source
	if e.ReportFile == OEMReportFile {
		what = "cloud-config from " + e.Source
	}
	return fmt.Sprintf("%s rejected: %d error(s), %d warning(s); nothing applied (report in %s)", what, n, w, filepath.Join(StateDir, f))
}

// Stage is pithd's first-boot stage.
type Stage struct {
	Applier *Applier
	// Now is the clock for State.Time (time.Now if nil).
	Now func() time.Time
}

func (s *Stage) state(p string) (string, error) {
	return under(s.Applier.Root, filepath.Join(StateDir, p))
}

// FirstBootDone reports whether first boot already applied user-data.
func (s *Stage) FirstBootDone() (bool, error) {
	p, err := s.state(FirstBootFile)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Run saves the input under StateDir, validates it, and applies it if it
// is valid: everything on first boot, the every-boot parts later. Invalid
// user-data returns *InvalidError and changes nothing but the records; the
// node boots on without it. First boot is recorded as done only once user
// data was applied (or there was none), so fixed user-data is picked up
// on the next boot.
func (s *Stage) Run(ctx context.Context, in Input) (*State, error) {
	done, err := s.FirstBootDone()
	if err != nil {
		return nil, err
	}
	first := !done || in.Full
	sum := sha256.Sum256(in.UserData)
	st := &State{Time: s.now().UTC(), FirstBoot: first, Source: in.Source, SHA256: hex.EncodeToString(sum[:]), Addresses: in.Addresses, SSHKeys: in.SSHKeys, Hostname: in.Hostname}
	if err := s.save(UserDataFile, in.UserData, 0o600); err != nil {
		return nil, err
	}
	if in.Metadata != nil {
		md, err := json.MarshalIndent(in.Metadata, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := s.save(MetadataFile, append(md, '\n'), 0o600); err != nil {
			return nil, err
		}
	}

	if first {
		noticeInitramfsSource(s.Applier.Root, in.Source, in.UserData, s.Applier.log())
	}
	ud, rep := s.parse(in)
	st.Format = ud.Format
	st.Errors, st.Warnings = rep.Count()
	st.Report = rep.Entries
	st.Valid = !rep.HasErrors()
	if err := s.save(ReportFile, []byte(rep.Format(filepath.Join(StateDir, UserDataFile))), 0o644); err != nil {
		return nil, err
	}
	opt := Options{FirstBoot: first, MetadataSSHKeys: in.SSHKeys, MetadataHostname: in.Hostname}
	if !st.Valid {
		// The datasource's own hostname and SSH keys still apply, as
		// coreos-cloudinit applied its metadata when user-data failed:
		// rejected user-data must not lock the operator out of the very
		// node that reports why (pithctl userdata needs a login).
		var metaErr error
		if len(in.SSHKeys) > 0 || in.Hostname != "" {
			metaErr = s.Applier.ApplyCloudConfig(ctx, &cloudconfig.Config{}, opt)
		}
		return st, errors.Join(&InvalidError{Source: in.Source, Report: rep}, metaErr, s.record(st))
	}

	applyErr := s.Applier.WriteEnvironment(in.Addresses)
	switch {
	case applyErr != nil:
	case ud.Format == cloudconfig.FormatCloudConfig:
		applyErr = s.Applier.ApplyCloudConfig(ctx, ud.CloudConfig, opt)
		if applyErr == nil {
			applyErr = s.saveJSON(SettingsFile, ud.CloudConfig.Settings())
		}
	case ud.Format == cloudconfig.FormatIgnition:
		if applyErr = s.checkIgnitionOnce(first, in.Full); applyErr == nil {
			applyErr = s.Applier.ApplyIgnition(ctx, ud.Ignition, opt)
		}
	case ud.Format == cloudconfig.FormatScript:
		// The metadata's hostname and keys still apply around a script.
		applyErr = s.Applier.ApplyCloudConfig(ctx, &cloudconfig.Config{}, opt)
		if applyErr == nil && first {
			applyErr = s.Applier.ApplyScript(ctx, ud.Script, !done)
		}
	case ud.Format == cloudconfig.FormatEmpty:
		applyErr = s.Applier.ApplyCloudConfig(ctx, &cloudconfig.Config{}, opt)
	}
	if applyErr != nil {
		st.ApplyErr = applyErr.Error()
		return st, errors.Join(fmt.Errorf("apply user-data from %s: %w", in.Source, applyErr), s.record(st))
	}
	st.Applied = true
	if err := s.record(st); err != nil {
		return st, err
	}
	if first {
		// What was applied (useradd's files among it) must be on disk
		// before the record that stops first boot from running again.
		if err := atomicfile.SyncFS(s.Applier.Root); err != nil {
			return st, err
		}
		// A cut here: everything applied, first boot not recorded; the
		// next boot applies it again, a #! script only if it did not end.
		crashpoint.Reach("firstboot-marker")
		if err := s.save(FirstBootFile, []byte(st.Time.Format(time.RFC3339)+"\n"), 0o644); err != nil {
			return st, err
		}
	}
	return st, nil
}

// RunSaved re-runs the stage with the user-data saved by an earlier boot,
// for boots where the datasource is gone (a detached config drive).
func (s *Stage) RunSaved(ctx context.Context) (*State, error) {
	p, err := s.state(UserDataFile)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	prev, err := ReadState(s.Applier.Root)
	if err != nil {
		return nil, err
	}
	return s.Run(ctx, Input{Source: prev.Source + " (saved)", UserData: data, Addresses: prev.Addresses, SSHKeys: prev.SSHKeys, Hostname: prev.Hostname})
}

// parse substitutes the address variables and validates. A variable the
// datasource has no value for is a warning at its first use.
func (s *Stage) parse(in Input) (*cloudconfig.UserData, *cloudconfig.Report) {
	raw, err := cloudconfig.Decompress(in.UserData)
	if err != nil {
		return cloudconfig.Parse(in.UserData) // reports the gzip error
	}
	data, missing := cloudconfig.Substitute(raw, in.Addresses)
	ud, rep := cloudconfig.Parse(data)
	checkStorageApplied(s.Applier.Root, in.Source, raw, ud, rep)
	checkKargsApplied(s.Applier.Root, in.Source, ud, rep)
	for _, v := range missing {
		rep.Warnf(positionOf(data, v), "", "%s is used but the %s datasource has no value for it; it is left as written", v, in.Source)
	}
	return ud, rep
}

func positionOf(data []byte, s string) cloudconfig.Pos {
	i := bytes.Index(data, []byte(s))
	if i < 0 {
		return cloudconfig.Pos{Line: 1}
	}
	line := bytes.Count(data[:i], []byte("\n")) + 1
	col := i - bytes.LastIndexByte(data[:i], '\n')
	return cloudconfig.Pos{Line: line, Column: col}
}

func (s *Stage) save(name string, data []byte, mode os.FileMode) error {
	p, err := s.state(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return writeAtomic(p, data, mode, -1, -1)
}

func (s *Stage) record(st *State) error { return s.saveJSON(StateFile, st) }

func (s *Stage) saveJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return s.save(name, append(b, '\n'), 0o644)
}

// ReadSettings returns the settings the last applied cloud-config gave the
// agent (zero Settings if there were none).
func ReadSettings(root string) (cloudconfig.Settings, error) {
	var set cloudconfig.Settings
	p, err := under(root, filepath.Join(StateDir, SettingsFile))
	if err != nil {
		return set, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return set, nil
	}
	if err != nil {
		return set, err
	}
	return set, json.Unmarshal(b, &set)
}

// ReadState returns the last State recorded under root.
func ReadState(root string) (*State, error) { return readStateFile(root, StateFile) }
