// Package applytest holds what tests that apply user-data share (those of
// cloudconfig/apply and agent/firstboot): Recorder, standing for systemd
// and the kernel's hostname, a root holding the host's account files so
// shadow's real tools work on it, and file checks. It imports nothing of
// Pith's, so apply's own tests can use it.
package applytest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Recorder stands for systemd and the host (apply.Units and apply.Host),
// recording each call in order.
type Recorder struct {
	mu    sync.Mutex
	Calls []string
	Fail  string // a call to fail, e.g. "start a.service"
}

func (r *Recorder) add(s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Calls = append(r.Calls, s)
	if s == r.Fail {
		return errors.New("injected failure")
	}
	return nil
}

// DaemonReload records "daemon-reload".
func (r *Recorder) DaemonReload(context.Context) error { return r.add("daemon-reload") }

// Enable records "enable NAMES runtime=BOOL".
func (r *Recorder) Enable(_ context.Context, n []string, rt bool) error {
	return r.add(fmt.Sprintf("enable %s runtime=%v", strings.Join(n, ","), rt))
}

// Disable records "disable NAMES runtime=BOOL".
func (r *Recorder) Disable(_ context.Context, n []string, rt bool) error {
	return r.add(fmt.Sprintf("disable %s runtime=%v", strings.Join(n, ","), rt))
}

// Mask records "mask NAMES runtime=BOOL".
func (r *Recorder) Mask(_ context.Context, n []string, rt bool) error {
	return r.add(fmt.Sprintf("mask %s runtime=%v", strings.Join(n, ","), rt))
}

// Run records "COMMAND NAME".
func (r *Recorder) Run(_ context.Context, name, cmd string) error { return r.add(cmd + " " + name) }

// SetHostname records "sethostname NAME".
func (r *Recorder) SetHostname(n string) error { return r.add("sethostname " + n) }

// NewRoot makes a root with the host's account files, so shadow's real
// tools (useradd --prefix, chpasswd --root) work on it.
func NewRoot(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"passwd", "group", "shadow", "gshadow", "login.defs"} {
		b, err := os.ReadFile(filepath.Join("/etc", f))
		if err != nil {
			t.Fatalf("host account file: %v", err)
		}
		mode := os.FileMode(0o644)
		if f == "shadow" || f == "gshadow" {
			mode = 0o640
		}
		if err := os.WriteFile(filepath.Join(root, "etc", f), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// Read returns the file's content.
func Read(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// CheckFile checks the file's mode, owner and, unless content is "", its
// content.
func CheckFile(t testing.TB, p string, mode os.FileMode, uid int, content string) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != mode {
		t.Errorf("%s: mode %v, want %v", p, st.Mode(), mode)
	}
	if got := int(st.Sys().(*syscall.Stat_t).Uid); got != uid {
		t.Errorf("%s: uid %d, want %d", p, got, uid)
	}
	if content != "" {
		if got := Read(t, p); got != content {
			t.Errorf("%s = %q, want %q", p, got, content)
		}
	}
}
