// Package units is the only code in Pith that talks to systemd. The
// scheduler's agent hands it unit files to write under /run/fleet/units,
// link at runtime, start, stop and inspect; the first-boot stage enables,
// masks and queues user-data's units through it (firstboot.go).
//
// Systemd (dbus.go) is the real backend over go-systemd's D-Bus client. A
// simulated backend for hosts without systemd lives apart, in simunits.
package units

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/atomicfile"
)

// DefaultDir is where fleet (and Pith) keep the unit files of scheduled
// units; they are linked into systemd's runtime search path from here.
const DefaultDir = "/run/fleet/units"

// Manager is what the scheduler's agent needs from a unit backend.
type Manager interface {
	// Load writes the unit file, links it at runtime and reloads systemd.
	Load(ctx context.Context, name string, contents []byte) error
	// Unload stops the unit, unlinks it and removes its file.
	Unload(ctx context.Context, name string) error
	// Start asks systemd to start the unit; the outcome shows in Status.
	Start(ctx context.Context, name string) error
	// Stop stops the unit and waits for systemd's job result.
	Stop(ctx context.Context, name string) error
	// Status returns systemd's LoadState, ActiveState and SubState.
	Status(ctx context.Context, name string) (load, active, sub string, err error)
	// ActiveFor returns systemd's ActiveState and SubState read now and,
	// while the unit is active, how long ago it last became active: a
	// unit that crashed and was restarted counts from its restart.
	ActiveFor(ctx context.Context, name string) (active, sub string, d time.Duration, err error)
	// List returns the units this backend manages, each with the SHA-1 hex
	// of its file (the scheduler's unit hash).
	List(ctx context.Context) (map[string]string, error)
	// StatusText writes a human status report (systemctl status).
	StatusText(ctx context.Context, name string, w io.Writer) error
	// Journal writes the unit's last lines of log, and follows if asked.
	Journal(ctx context.Context, name string, lines int, follow bool, w io.Writer) error
}

// CheckName refuses names that could escape the unit directory; full unit
// name validation is the scheduler's job.
func CheckName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." || strings.HasPrefix(name, ".") {
		return fmt.Errorf("units: refusing unit name %q", name)
	}
	return nil
}

// HashBytes is the hash List reports for a file's contents.
func HashBytes(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

// writeFile writes path atomically and durably (atomicfile).
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o644)
}

// listDir hashes every unit file in dir (temp files skipped).
func listDir(dir string) (map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = HashBytes(b)
	}
	return out, nil
}
