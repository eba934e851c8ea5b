package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// IgnitionStartedFile, under StateDir, is written once an Ignition
// config passed every check (sources fetched, hashes, overwrite rules)
// and before its first write. Ignition runs once: if first boot was not
// recorded done afterwards (an apply error, a power cut), the machine may
// be half-provisioned, and a later boot must say so rather than apply the
// config again as if the machine were fresh.
const IgnitionStartedFile = "ignition-apply.started"

func (a *Applier) markIgnitionStarted() error {
	p, err := a.path(filepath.Join(StateDir, IgnitionStartedFile))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return writeAtomic(p, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644, -1, -1)
}

// checkIgnitionOnce refuses a first boot whose Ignition apply began on
// an earlier boot and never ended. Later boots apply nothing of Ignition,
// and a full apply (pithd firstboot --now, as pithctl userdata apply runs
// it) is the operator's decision to go over what is there.
func (s *Stage) checkIgnitionOnce(first, full bool) error {
	if !first || full {
		return nil
	}
	p, err := s.state(IgnitionStartedFile)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("an earlier boot began applying the Ignition config (%s, at %s) and did not finish: this machine may be half-provisioned, so the config is not applied again; reprovision it, or apply it over what is there with pithctl userdata apply",
		filepath.Join(StateDir, IgnitionStartedFile), strings.TrimSpace(string(b)))
}
