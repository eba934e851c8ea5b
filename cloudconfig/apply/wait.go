package apply

// What agent/firstboot's Boot needs of a Stage beyond Run, RunOEM and
// RunSaved: the wait for user-data that arrives after boot, the lock that
// keeps two runs apart, and pithd's configuration to compare.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// WaitDropIn keeps pithd.service from starting while the node waits for
// user-data that arrives after boot (Vagrant's provisioner uploads it over
// SSH): a KV started before would bootstrap a one-node cluster instead of
// joining the one the user-data describes. It lives under /run and is
// written on each boot that still waits.
const WaitDropIn = "/run/systemd/system/pithd.service.d/10-wait-user-data.conf"

// RecordWaiting records that first boot waits for user-data from the
// datasource named waiting.
func (s *Stage) RecordWaiting(waiting string) (*State, error) {
	st := &State{Time: s.now().UTC(), FirstBoot: true, Source: "none", Valid: true, Waiting: waiting}
	return st, s.record(st)
}

// SetWait writes or removes WaitDropIn and has systemd reload when it
// changed (pithd.service's start job reads its conditions when it runs).
func (s *Stage) SetWait(ctx context.Context, wait bool) error {
	p, err := s.Applier.path(WaitDropIn)
	if err != nil {
		return err
	}
	changed := false
	if wait {
		text := fmt.Sprintf("# Written by pithd firstboot: no user-data yet from a datasource that\n# delivers it after boot. pithd starts once it is applied.\n[Unit]\nConditionPathExists=%s\n", filepath.Join(StateDir, FirstBootFile))
		if changed, err = s.Applier.write(p, []byte(text), 0o644, 0, 0); err != nil {
			return err
		}
	} else {
		err := os.Remove(p)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		if err == nil {
			changed = true
			s.Applier.changed("removed %s", WaitDropIn)
		}
	}
	if changed && s.Applier.Units != nil {
		return s.Applier.Units.DaemonReload(ctx)
	}
	return nil
}

// AgentConfig is what the stage gave pithd (its drop-in and secrets), to
// tell whether a run changed it.
func (s *Stage) AgentConfig() []byte { return s.Applier.agentConfig() }

func readOrNil(p string, err error) []byte {
	if err != nil {
		return nil
	}
	b, _ := os.ReadFile(p)
	return b
}

// LockState takes an exclusive lock on StateDir/.lock under root, waiting
// for a run in progress to finish; call the returned function to release it.
func LockState(root string) (func(), error) {
	p, err := under(root, filepath.Join(StateDir, ".lock"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}
