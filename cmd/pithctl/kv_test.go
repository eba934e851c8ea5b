package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/internal/pithdtest"

	"github.com/pith-os/pith/agent/kv"
)

// TestKVCommands runs the built pithctl against a real keys API server
// (the single-process store) and checks output and etcdctl's exit codes.
func TestKVCommands(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pithctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	st := kv.NewStore(kv.Options{})
	srv := httptest.NewServer(kv.NewServer(st, kv.NewLocal(st), kv.Limits{}))
	defer srv.Close()
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PITHCTL_ENDPOINTS="+srv.URL)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	steps := []struct {
		args    []string
		stdout  string
		stderr  string // substring
		code    int
		noCheck bool
	}{
		{args: []string{"kv", "--no-sync", "set", "/foo", "bar"}, stdout: "bar\n"},
		{args: []string{"kv", "--no-sync", "get", "/foo"}, stdout: "bar\n"},
		{args: []string{"kv", "--no-sync", "mk", "/foo", "x"}, stderr: "Error:  105: Key already exists (/foo) [1]", code: 4},
		{args: []string{"kv", "--no-sync", "get", "/nope"}, stderr: "Error:  100: Key not found (/nope) [1]", code: 4},
		{args: []string{"kv", "--no-sync", "set", "--swap-with-value", "nope", "/foo", "y"}, stderr: "101: Compare failed ([nope != bar])", code: 4},
		{args: []string{"kv", "--no-sync", "update", "/foo", "baz"}, stdout: "baz\n"},
		{args: []string{"kv", "--no-sync", "-o", "extended", "get", "/foo"}, stdout: "Key: /foo\nCreated-Index: 1\nModified-Index: 2\nTTL: 0\nIndex: 2\n\nbaz\n"},
		{args: []string{"kv", "--no-sync", "mkdir", "/dir"}, stdout: ""},
		{args: []string{"kv", "--no-sync", "mk", "/dir/a", "1"}, stdout: "1\n"},
		{args: []string{"kv", "--no-sync", "mk", "--in-order", "/queue", "job"}, stdout: "job\n"},
		{args: []string{"kv", "--no-sync", "ls", "--sort"}, stdout: "/dir\n/foo\n/queue\n"},
		{args: []string{"kv", "--no-sync", "ls", "-r", "-p", "--sort", "/dir"}, stdout: "/dir/a\n"},
		{args: []string{"kv", "--no-sync", "ls", "--recursive", "--sort", "-p"}, stdout: "/dir/\n/dir/a\n/foo\n/queue/\n/queue/00000000000000000005\n"},
		{args: []string{"kv", "--no-sync", "get", "/dir"}, stderr: "/dir: is a directory", code: 1},
		{args: []string{"kv", "--no-sync", "rmdir", "/dir"}, stderr: "108: Directory not empty", code: 4},
		{args: []string{"kv", "--no-sync", "rm", "--recursive", "/dir"}, stdout: ""},
		{args: []string{"kv", "--no-sync", "rm", "--with-value", "baz", "/foo"}, stdout: "PrevNode.Value: baz\n"},
		{args: []string{"kv", "--no-sync", "get"}, stderr: "key required", code: 1},
		{args: []string{"kv", "--no-sync", "-o", "yaml", "get", "/x"}, stderr: "--output \"yaml\"", code: 1},
		{args: []string{"kv", "--no-sync", "--endpoints", "http://127.0.0.1:1", "get", "/x"}, code: 5, noCheck: true},
	}
	for i, s := range steps {
		out, errs, code := run(s.args...)
		if code != s.code || (!s.noCheck && out != s.stdout) || !strings.Contains(errs, s.stderr) {
			t.Fatalf("step %d %v: exit %d stdout %q stderr %q\nwant exit %d stdout %q stderr containing %q", i, s.args, code, out, errs, s.code, s.stdout, s.stderr)
		}
	}

	// watch returns the next change; exec-watch runs a command per change.
	done := make(chan string, 1)
	go func() {
		out, errs, _ := run("kv", "--no-sync", "watch", "/w")
		done <- out + errs
	}()
	pithdtest.Poll(t, "one watcher", func() (bool, string) { n := st.Stats()["watchers"]; return n == 1, fmt.Sprintf("%d watchers", n) })
	st.Set("/w", false, "hello", 0, false)
	if got := <-done; got != "hello\n" {
		t.Fatalf("watch printed %q", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outFile := filepath.Join(t.TempDir(), "events")
	cmd := exec.CommandContext(ctx, bin, "kv", "--no-sync", "exec-watch", "--recursive", "/e", "--", "sh", "-c", `echo "$ETCD_WATCH_ACTION $ETCD_WATCH_KEY $ETCD_WATCH_VALUE" >> `+outFile)
	cmd.Env = append(os.Environ(), "PITHCTL_ENDPOINTS="+srv.URL)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pithdtest.Poll(t, "one watcher", func() (bool, string) { n := st.Stats()["watchers"]; return n == 1, fmt.Sprintf("%d watchers", n) })
	st.Set("/e/x", false, "v1", 0, false)
	pithdtest.Poll(t, "one exec-watch run", func() (bool, string) {
		b, _ := os.ReadFile(outFile)
		return strings.Count(string(b), "\n") == 1, string(b)
	})
	st.Set("/e/x", false, "v2", 0, false)
	pithdtest.Poll(t, "two exec-watch runs", func() (bool, string) {
		b, _ := os.ReadFile(outFile)
		return strings.Count(string(b), "\n") == 2, string(b)
	})
	cancel()
	_ = cmd.Wait()
	if b, _ := os.ReadFile(outFile); string(b) != "set /e/x v1\nset /e/x v2\n" {
		t.Fatalf("exec-watch ran: %q", b)
	}
}
