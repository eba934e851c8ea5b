// Package simunits is a simulated unit backend for hosts without systemd.
// It is NOT systemd: it keeps unit files in a directory and pretends to
// start and stop them, so multi-process scheduler tests can run real pithd
// nodes on 127.0.0.1. Nothing outside tests and `pithd --unit-backend=sim`
// may use it.
package simunits

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pith-os/pith/agent/units"
)

// Sim is the simulated backend. Units whose file contains the line
// "ExecStart=/bin/false" fail to start, like a crashing service would.
type Sim struct {
	dir    string
	mu     sync.Mutex
	active map[string]string // name -> SubState while active
	since  map[string]time.Time
	failed map[string]bool
	log    map[string][]string
	// Ops records every operation, in order ("start a.service", ...).
	Ops []string
}

// New keeps unit files under dir (created if needed).
func New(dir string) (*Sim, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("simunits: %w", err)
	}
	return &Sim{dir: dir, active: map[string]string{}, since: map[string]time.Time{}, failed: map[string]bool{}, log: map[string][]string{}}, nil
}

func (s *Sim) record(op, name string) {
	s.Ops = append(s.Ops, op+" "+name)
	s.log[name] = append(s.log[name], time.Now().UTC().Format(time.RFC3339)+" "+op)
}

// Load implements units.Manager.
func (s *Sim) Load(_ context.Context, name string, contents []byte) error {
	if err := units.CheckName(name); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(s.dir, name), contents); err != nil {
		return err
	}
	s.mu.Lock()
	s.record("load", name)
	s.mu.Unlock()
	return nil
}

// Unload implements units.Manager.
func (s *Sim) Unload(_ context.Context, name string) error {
	if err := units.CheckName(name); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.active, name)
	delete(s.failed, name)
	s.record("unload", name)
	s.mu.Unlock()
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Start implements units.Manager.
func (s *Sim) Start(_ context.Context, name string) error {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return fmt.Errorf("simunits: start %s: unit not loaded", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record("start", name)
	if strings.Contains(string(b), "ExecStart=/bin/false") {
		delete(s.active, name)
		s.failed[name] = true
		return fmt.Errorf("simunits: start %s: systemd job failed", name)
	}
	delete(s.failed, name)
	if s.active[name] == "" {
		s.since[name] = time.Now()
	}
	s.active[name] = "running"
	return nil
}

// Stop implements units.Manager.
func (s *Sim) Stop(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record("stop", name)
	delete(s.active, name)
	return nil
}

// Status implements units.Manager.
func (s *Sim) Status(_ context.Context, name string) (string, string, string, error) {
	if _, err := os.Stat(filepath.Join(s.dir, name)); err != nil {
		return "not-found", "inactive", "dead", nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.failed[name]:
		return "loaded", "failed", "failed", nil
	case s.active[name] != "":
		return "loaded", "active", s.active[name], nil
	}
	return "loaded", "inactive", "dead", nil
}

// ActiveFor implements units.Manager: a simulated unit has been active
// since the Start that found it stopped.
func (s *Sim) ActiveFor(ctx context.Context, name string) (string, string, time.Duration, error) {
	_, active, sub, err := s.Status(ctx, name)
	if err != nil || active != "active" {
		return active, sub, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return active, sub, time.Since(s.since[name]), nil
}

// List implements units.Manager.
func (s *Sim) List(context.Context) (map[string]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = units.HashBytes(b)
	}
	return out, nil
}

// StatusText implements units.Manager.
func (s *Sim) StatusText(ctx context.Context, name string, w io.Writer) error {
	load, active, sub, _ := s.Status(ctx, name)
	_, err := fmt.Fprintf(w, "● %s (simulated backend, no systemd)\n   Loaded: %s (%s)\n   Active: %s (%s)\n", name, load, filepath.Join(s.dir, name), active, sub)
	return err
}

// Journal implements units.Manager: it prints the simulated operations on
// the unit. Follow is not supported (it returns at once).
func (s *Sim) Journal(_ context.Context, name string, lines int, _ bool, w io.Writer) error {
	s.mu.Lock()
	l := append([]string(nil), s.log[name]...)
	s.mu.Unlock()
	if lines >= 0 && len(l) > lines {
		l = l[len(l)-lines:]
	}
	for _, line := range l {
		if _, err := fmt.Fprintf(w, "%s[sim]: %s\n", name, line); err != nil {
			return err
		}
	}
	return nil
}

// Active returns the names of running units, sorted.
func (s *Sim) Active() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.active {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func writeFile(path string, b []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

var _ units.Manager = (*Sim)(nil)
