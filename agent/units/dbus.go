package units

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/pith-os/pith/node/crashpoint"
)

// Systemd manages units through systemd's D-Bus API. It is kept small on
// purpose: it is exercised only on hosts with systemd (the e2e VM tests),
// not in this package's unit tests.
type Systemd struct {
	// Dir holds the unit files (DefaultDir unless set).
	Dir  string
	mu   sync.Mutex
	conn *sd.Conn
}

// NewSystemd connects to the system bus.
func NewSystemd(ctx context.Context, dir string) (*Systemd, error) {
	if dir == "" {
		dir = DefaultDir
	}
	conn, err := sd.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("units: cannot reach systemd over D-Bus (is this a systemd host?): %w", err)
	}
	return &Systemd{Dir: dir, conn: conn}, nil
}

// Close drops the D-Bus connection.
func (s *Systemd) Close() { s.conn.Close() }

// Load implements Manager.
func (s *Systemd) Load(ctx context.Context, name string, contents []byte) error {
	if err := CheckName(name); err != nil {
		return err
	}
	p := filepath.Join(s.Dir, name)
	if err := writeFile(p, contents); err != nil {
		return fmt.Errorf("units: write %s: %w", p, err)
	}
	// A cut with the file written, not linked nor loaded: the next boot's
	// scheduler agent writes it again from the KV.
	crashpoint.Reach("unit-file-written")
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.conn.LinkUnitFilesContext(ctx, []string{p}, true, true); err != nil {
		return fmt.Errorf("units: link %s: %w", name, err)
	}
	if err := s.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("units: daemon-reload: %w", err)
	}
	return nil
}

// Unload implements Manager.
func (s *Systemd) Unload(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := s.Stop(ctx, name); err != nil && !noSuchUnit(err) {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.conn.DisableUnitFilesContext(ctx, []string{name}, true); err != nil {
		return fmt.Errorf("units: unlink %s: %w", name, err)
	}
	if err := os.Remove(filepath.Join(s.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("units: remove %s: %w", name, err)
	}
	if err := s.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("units: daemon-reload: %w", err)
	}
	return nil
}

// jobWait bounds how long one start/stop waits for systemd's job result
// when the caller set no deadline; a slow unit is then retried by the
// next reconcile (systemd merges the repeated job).
const jobWait = 2 * time.Minute

func (s *Systemd) job(ctx context.Context, what, name string, call func(context.Context, string, string, chan<- string) (int, error)) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, jobWait)
		defer cancel()
	}
	ch := make(chan string, 1)
	if _, err := call(ctx, name, "replace", ch); err != nil {
		return fmt.Errorf("units: %s %s: %w", what, name, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("units: %s %s: systemd job %s", what, name, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("units: %s %s: no job result from systemd: %w", what, name, ctx.Err())
	}
}

// Start implements Manager: it queues the start job and returns once
// systemd accepted it, as fleet did. Waiting for the result would hold the
// agent for as long as the unit's dependencies take (a container image
// import under TCG: minutes); the outcome shows in Status instead, and a
// unit that fails is left to its Restart=.
func (s *Systemd) Start(ctx context.Context, name string) error {
	if _, err := s.conn.StartUnitContext(ctx, name, "replace", nil); err != nil {
		return fmt.Errorf("units: start %s: %w", name, err)
	}
	return nil
}

// Stop implements Manager. Unlike Start it waits for the job: a unit
// moving to another machine must be down here before it is unlinked, and a
// stop is bounded by the unit's TimeoutStopSec.
func (s *Systemd) Stop(ctx context.Context, name string) error {
	return s.job(ctx, "stop", name, s.conn.StopUnitContext)
}

// states reads name's load, active and sub states with ListUnitsByNames,
// whose answer holds a few fields of the unit where GetUnitProperties's
// holds all of its properties (about a hundred): the scheduler asks for
// every unit it runs each second, and under TCG the whole set cost
// systemd, dbus-daemon and pithd together about twice the CPU (a guest,
// 300 calls each: 7-9 ms against 4 ms a call). Like GetUnitProperties it
// loads a unit systemd does not know: LoadState "not-found".
func (s *Systemd) states(ctx context.Context, name string) (sd.UnitStatus, error) {
	l, err := s.conn.ListUnitsByNamesContext(ctx, []string{name})
	if err != nil {
		return sd.UnitStatus{}, fmt.Errorf("units: status %s: %w", name, err)
	}
	if len(l) != 1 || l[0].Name != name {
		return sd.UnitStatus{}, fmt.Errorf("units: status %s: systemd answered for %d units: %+v", name, len(l), l)
	}
	return l[0], nil
}

// Status implements Manager.
func (s *Systemd) Status(ctx context.Context, name string) (string, string, string, error) {
	st, err := s.states(ctx, name)
	if err != nil {
		return "", "", "", err
	}
	return st.LoadState, st.ActiveState, st.SubState, nil
}

// ActiveFor implements Manager with systemd's ActiveEnterTimestampMonotonic
// (CLOCK_MONOTONIC microseconds), so a wall clock set during boot cannot
// make a unit look active for longer than it was. The timestamp is read
// after the states: a restart in between only makes the time shorter.
func (s *Systemd) ActiveFor(ctx context.Context, name string) (string, string, time.Duration, error) {
	st, err := s.states(ctx, name)
	if err != nil {
		return "", "", 0, err
	}
	if st.ActiveState != "active" {
		return st.ActiveState, st.SubState, 0, nil
	}
	p, err := s.conn.GetUnitPropertyContext(ctx, name, "ActiveEnterTimestampMonotonic")
	if err != nil {
		return "", "", 0, fmt.Errorf("units: status %s: %w", name, err)
	}
	entered, ok := p.Value.Value().(uint64)
	if !ok {
		return "", "", 0, fmt.Errorf("units: status %s: ActiveEnterTimestampMonotonic is %s, not a uint64", name, p.Value)
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		return "", "", 0, fmt.Errorf("units: monotonic clock: %w", err)
	}
	since := time.Duration(now.Nano()) - time.Duration(entered)*time.Microsecond
	return st.ActiveState, st.SubState, max(since, 0), nil
}

// List implements Manager.
func (s *Systemd) List(context.Context) (map[string]string, error) { return listDir(s.Dir) }

// StatusText implements Manager with systemctl, as an operator would run it.
func (s *Systemd) StatusText(ctx context.Context, name string, w io.Writer) error {
	if err := CheckName(name); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "systemctl", "status", "--no-pager", "--full", "--lines=10", "--", name)
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	// systemctl status exits 3 for inactive units: that is still a report.
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() <= 4 {
		return nil
	}
	return err
}

// Journal implements Manager with journalctl.
func (s *Systemd) Journal(ctx context.Context, name string, lines int, follow bool, w io.Writer) error {
	if err := CheckName(name); err != nil {
		return err
	}
	args := []string{"--no-pager", "--unit", name, "--lines", strconv.Itoa(lines)}
	if follow {
		args = append(args, "--follow")
	}
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("units: journalctl: %w", err)
	}
	return nil
}

// noSuchUnit reports systemd's "unit not loaded" error, which Unload
// treats as already stopped.
func noSuchUnit(err error) bool {
	var v godbus.Error
	if errors.As(err, &v) {
		return v.Name == "org.freedesktop.systemd1.NoSuchUnit"
	}
	var p *godbus.Error
	return errors.As(err, &p) && p.Name == "org.freedesktop.systemd1.NoSuchUnit"
}

var _ Manager = (*Systemd)(nil)
