package firstboot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pith-os/pith/cloudconfig/apply"
)

// recorder stands for systemd and the kernel's hostname (apply.Units and
// apply.Host), recording each call.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
	return nil
}

func (r *recorder) DaemonReload(context.Context) error { return r.add("daemon-reload") }
func (r *recorder) Enable(_ context.Context, n []string, rt bool) error {
	return r.add(fmt.Sprintf("enable %s runtime=%v", strings.Join(n, ","), rt))
}
func (r *recorder) Disable(_ context.Context, n []string, rt bool) error {
	return r.add(fmt.Sprintf("disable %s runtime=%v", strings.Join(n, ","), rt))
}
func (r *recorder) Mask(_ context.Context, n []string, rt bool) error {
	return r.add(fmt.Sprintf("mask %s runtime=%v", strings.Join(n, ","), rt))
}
func (r *recorder) Run(_ context.Context, name, cmd string) error { return r.add(cmd + " " + name) }
func (r *recorder) SetHostname(n string) error                    { return r.add("sethostname " + n) }

// newStage is a stage on a temp root holding the host's account files, so
// shadow's real tools work on it.
func newStage(t *testing.T) (*apply.Stage, *recorder, string) {
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
	rec := &recorder{}
	return &apply.Stage{Applier: &apply.Applier{Root: root, Accounts: &apply.Shadow{Root: root}, Units: rec, Host: rec, Logf: t.Logf}}, rec, root
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkFile(t *testing.T, p string, mode os.FileMode, uid int, content string) {
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
	if got := read(t, p); content != "" && got != content {
		t.Errorf("%s = %q, want %q", p, got, content)
	}
}
