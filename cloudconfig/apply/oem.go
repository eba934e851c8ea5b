package apply

import (
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

	"github.com/pith-os/pith/cloudconfig"
)

// Files under StateDir for the OEM partition's cloud-config.
const (
	OEMUserDataFile = "oem-cloud-config.yml"    // the OEM config, as read
	OEMReportFile   = "oem-cloud-config.report" // its validation report
	OEMStateFile    = "oem.json"                // State of its last run
)

// RunOEM validates and applies the OEM partition's cloud-config (CoreOS's
// /usr/share/oem/cloud-config.yml), before the user's user-data. It is
// applied in full (users, keys) the first time and whenever it differs
// from the one last applied (a new box, an OEM update); otherwise only
// the every-boot parts, as for user-data. It never configures pithd (see
// Options.OEM). Invalid OEM config returns *InvalidError and changes
// nothing; the user-data stage runs anyway.
func (s *Stage) RunOEM(ctx context.Context, data []byte) (*State, error) {
	sum := sha256.Sum256(data)
	st := &State{Time: s.now().UTC(), Source: "oem", SHA256: hex.EncodeToString(sum[:])}
	prev, err := readStateFile(s.Applier.Root, OEMStateFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.FirstBoot = true
	case err != nil:
		return nil, err
	default:
		st.FirstBoot = !prev.Applied || prev.SHA256 != st.SHA256
	}
	if err := s.save(OEMUserDataFile, data, 0o600); err != nil {
		return nil, err
	}
	ud, rep := s.parse(Input{Source: "oem", UserData: data})
	st.Format = ud.Format
	if ud.Format != cloudconfig.FormatCloudConfig && ud.Format != cloudconfig.FormatEmpty && !rep.HasErrors() {
		rep.Errorf(cloudconfig.Pos{Line: 1}, "", "the OEM partition takes a #cloud-config, not %s: put other formats in user-data", ud.Format)
	}
	st.Errors, st.Warnings = rep.Count()
	st.Report = rep.Entries
	st.Valid = !rep.HasErrors()
	if err := s.save(OEMReportFile, []byte(rep.Format(filepath.Join(StateDir, OEMUserDataFile))), 0o644); err != nil {
		return nil, err
	}
	if !st.Valid {
		return st, errors.Join(&InvalidError{Source: "the OEM partition", Report: rep, ReportFile: OEMReportFile}, s.saveJSON(OEMStateFile, st))
	}
	if ud.Format == cloudconfig.FormatCloudConfig {
		if err := s.Applier.ApplyCloudConfig(ctx, ud.CloudConfig, Options{FirstBoot: st.FirstBoot, OEM: true}); err != nil {
			st.ApplyErr = err.Error()
			return st, errors.Join(fmt.Errorf("apply the OEM cloud-config: %w", err), s.saveJSON(OEMStateFile, st))
		}
	}
	st.Applied = true
	return st, s.saveJSON(OEMStateFile, st)
}

func (s *Stage) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ReadOEMState returns the last OEM run recorded under root.
func ReadOEMState(root string) (*State, error) { return readStateFile(root, OEMStateFile) }

func readStateFile(root, name string) (*State, error) {
	p, err := under(root, filepath.Join(StateDir, name))
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &st, nil
}
