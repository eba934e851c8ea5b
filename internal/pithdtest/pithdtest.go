// Package pithdtest is the harness for tests that run real pithd
// processes on 127.0.0.1: it builds pithd once per test binary, hands out
// ports never handed out before, starts, kills, pauses and resumes
// processes (their logs shown when the test failed), and polls for what
// the test waits on (internal/poll, bounded only by the test binary's
// -timeout).
package pithdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pith-os/pith/internal/poll"
)

// build is the pithd binary of this test binary, built once.
var build = sync.OnceValues(func() (string, error) {
	if p := os.Getenv("PITH_TEST_PITHD"); p != "" {
		return p, nil // built by the parent test (a re-exec, e.g. in a netns)
	}
	dir, err := os.MkdirTemp("", "pithd-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "pithd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/pith-os/pith/cmd/pithd").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build pithd: %v\n%s", err, out)
	}
	return bin, nil
})

// Binary returns pithd built from this tree (once per test binary), or
// $PITH_TEST_PITHD when set.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

var ports = struct {
	sync.Mutex
	used map[int]bool
}{used: map[int]bool{}}

// FreePort returns a 127.0.0.1 port free now and never handed out before
// in this test binary (the kernel may offer a just-closed port again).
func FreePort(t testing.TB) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !ports.used[p] {
			ports.used[p] = true
			return p
		}
	}
	t.Fatal("no fresh free port")
	return 0
}

// Poll checks cond every 100 ms until it holds, logging each new state
// it describes. Only the test binary's -timeout bounds it: no wall-clock
// limit that fails on a loaded machine.
func Poll(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	_, _ = poll.Until(context.Background(), what, 100*time.Millisecond, cond, func(s string) {
		t.Logf("waiting for %s: %s", what, s)
	})
}

// Proc is one running process with its output in Log.
type Proc struct {
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs bin with args, its output appended to log. It is killed at
// the end of the test, and the end of its log shown if the test failed.
func Start(t testing.TB, bin, log string, args ...string) *Proc {
	t.Helper()
	logf, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{Log: log, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- %s ---\n%s", log, Tail(log, 3000))
		}
	})
	return p
}

// Kill sends SIGKILL and waits for the process to end (a no-op once it
// ended).
func (p *Proc) Kill() { p.Signal(syscall.SIGKILL); <-p.done }

// Stop sends SIGTERM (pithd shuts down cleanly) and waits for the end.
func (p *Proc) Stop() { p.Signal(syscall.SIGTERM); <-p.done }

// Pause stops the process (SIGSTOP) until Resume: to its peers it hangs.
func (p *Proc) Pause() { p.Signal(syscall.SIGSTOP) }

// Resume continues a paused process.
func (p *Proc) Resume() { p.Signal(syscall.SIGCONT) }

// Signal sends sig unless the process ended.
func (p *Proc) Signal(sig os.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// Done is closed once the process ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Tail returns the last n bytes of the file at path.
func Tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
