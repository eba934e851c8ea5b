package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/agent/schedule/fleetapi"
	"github.com/pith-os/pith/agent/units/simunits"
	"github.com/pith-os/pith/fleetv1"
	"github.com/pith-os/pith/unitfile"
)

// anySim answers unit inspection from whichever simulated machine has the
// unit (all test machines share 127.0.0.1).
type anySim []*simunits.Sim

func (a anySim) pick(name string) *simunits.Sim {
	for _, s := range a {
		if l, _ := s.List(context.Background()); l[name] != "" {
			return s
		}
	}
	return a[0]
}

func (a anySim) StatusText(ctx context.Context, name string, w io.Writer) error {
	return a.pick(name).StatusText(ctx, name, w)
}

func (a anySim) Journal(ctx context.Context, name string, lines int, follow bool, w io.Writer) error {
	return a.pick(name).Journal(ctx, name, lines, follow, w)
}

// startCluster runs an in-process leader engine and n simulated agents
// behind a real HTTP server; it returns the endpoint and its port.
func startCluster(t *testing.T, n int) (string, int) {
	store := schedule.NewMemStore()
	live := schedule.NewLiveness(time.Now, schedule.DefaultTTL)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var sims anySim
	for i := 0; i < n; i++ {
		sim, err := simunits.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		sims = append(sims, sim)
		m := schedule.Machine{ID: fmt.Sprintf("%032x", i+1), PublicIP: "127.0.0.1", Metadata: map[string]string{"n": strconv.Itoa(i)}}
		a := schedule.NewAgent(m, store.State(), sim)
		go a.Run(ctx, 20*time.Millisecond, live.Heartbeat, nil)
	}
	eng := &schedule.Engine{Store: store, Live: live, Term: 1}
	go eng.Run(ctx, 20*time.Millisecond, nil)
	mux := http.NewServeMux()
	mux.Handle(fleetv1.Prefix+"/", fleetapi.New(store, live))
	mux.Handle(fleetv1.UnitsPath, fleetapi.Units(sims))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	p, _ := strconv.Atoi(port)
	// Wait until every machine has reported (heartbeats are asynchronous).
	c, _ := fleetv1.NewClient(srv.URL)
	for {
		ms, err := c.Machines(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return srv.URL, p
}

func pithctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "pithctl", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(unitCommands()...)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := pithctl(t, args...)
	if err != nil {
		t.Fatalf("pithctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

const mongoTemplate = `[Unit]
Description=MongoDB %i
After=docker.service

[Service]
ExecStart=/usr/bin/docker run --name mongo-%i mongo

[X-Fleet]
Conflicts=mongo@*.service
`

func TestWalkthrough(t *testing.T) {
	ep, port := startCluster(t, 2)
	t.Setenv("FLEETCTL_ENDPOINT", ep)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mongo@.service"), []byte(mongoTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)

	out := mustRun(t, "start", "mongo@1", "mongo@2")
	if !strings.Contains(out, "Unit mongo@1.service launched on ") || !strings.Contains(out, "Unit mongo@2.service launched on ") {
		t.Fatalf("start output:\n%s", out)
	}
	out = mustRun(t, "list-units", "--no-legend", "--fields", "unit,machine,active,sub", "-l")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("list-units:\n%s", out)
	}
	f1, f2 := strings.Fields(lines[0]), strings.Fields(lines[1])
	if f1[0] != "mongo@1.service" || f2[0] != "mongo@2.service" || f1[1] == f2[1] || f1[2] != "active" || f1[3] != "running" {
		t.Fatalf("list-units:\n%s", out)
	}
	if !strings.HasSuffix(f1[1], "/127.0.0.1") || len(strings.Split(f1[1], "/")[0]) != 32 {
		t.Fatalf("full machine column %q", f1[1])
	}
	out = mustRun(t, "list-units")
	if h := strings.Fields(strings.Split(out, "\n")[0]); strings.Join(h, " ") != "UNIT MACHINE ACTIVE SUB" || !strings.Contains(out, "00000000.../127.0.0.1") {
		t.Fatalf("list-units default:\n%s", out)
	}

	// A third instance cannot go anywhere: start says why.
	out, err := pithctl(t, "start", "--block-timeout", "1s", "mongo@3")
	if err == nil || !strings.Contains(err.Error(), "mongo@3.service: not scheduled: no eligible machine among 2 live: 2 host a conflicting unit") {
		t.Fatalf("start mongo@3: %v\n%s", err, out)
	}
	if !strings.Contains(out, "mongo@3.service: waiting: not scheduled: no eligible machine") {
		t.Fatalf("start mongo@3 did not say why while waiting:\n%s", out)
	}
	out = mustRun(t, "start", "--no-block", "mongo@3")
	if out != "" {
		t.Fatalf("--no-block printed %q", out)
	}

	out = mustRun(t, "list-unit-files", "--no-legend", "--fields", "unit,dstate,state")
	want := "mongo@1.service launched launched|mongo@2.service launched launched|mongo@3.service launched inactive"
	if got := fieldsOf(out); got != want {
		t.Fatalf("list-unit-files:\n%q\nwant\n%q", out, want)
	}
	out = mustRun(t, "list-machines", "--endpoint", ep)
	if got := fieldsOf(out); got != "MACHINE IP METADATA|00000000... 127.0.0.1 n=0|00000000... 127.0.0.1 n=1" {
		t.Fatalf("list-machines:\n%s", out)
	}
	if _, err := pithctl(t, "list-machines", "--fields", "machine,bogus"); err == nil || !strings.Contains(err.Error(), `unknown field "bogus"`) {
		t.Fatalf("bad field: %v", err)
	}
	out = mustRun(t, "cat", "mongo@1")
	if !strings.Contains(out, "[X-Fleet]\nConflicts=mongo@*.service\n") {
		t.Fatalf("cat:\n%s", out)
	}
	out = mustRun(t, "status", "mongo@1", "--agent-port", strconv.Itoa(port))
	if !strings.Contains(out, "mongo@1.service") || !strings.Contains(out, "Active: active (running)") {
		t.Fatalf("status:\n%s", out)
	}
	out = mustRun(t, "journal", "--lines", "1", "mongo@1", "--agent-port", strconv.Itoa(port))
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "start") {
		t.Fatalf("journal:\n%s", out)
	}

	out = mustRun(t, "stop", "mongo@1")
	if !strings.Contains(out, "Unit mongo@1.service loaded on ") {
		t.Fatalf("stop: %s", out)
	}
	// Freed of mongo@1's conflict? No: a loaded unit still holds its place.
	out = mustRun(t, "unload", "mongo@1")
	if out != "Unit mongo@1.service inactive\n" {
		t.Fatalf("unload: %q", out)
	}
	// Now mongo@3 has a machine.
	out = mustRun(t, "start", "mongo@3")
	if !strings.Contains(out, "Unit mongo@3.service launched on ") {
		t.Fatalf("start mongo@3 after unload: %s", out)
	}
	out = mustRun(t, "destroy", "mongo@1", "mongo@2", "mongo@3")
	if out != "Destroyed mongo@1.service\nDestroyed mongo@2.service\nDestroyed mongo@3.service\n" {
		t.Fatalf("destroy: %q", out)
	}
	if _, err := pithctl(t, "destroy", "mongo@1"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("destroy twice: %v", err)
	}
}

func TestSubmitErrors(t *testing.T) {
	ep, _ := startCluster(t, 1)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		file, body, err string
	}{
		{"bad.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineIDs=abc\n", `unrecognized requirement in [X-Fleet] section: "MachineIDs"`},
		{"both.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\nMachineOf=x.service\n", "Global=true allows only MachineMetadata"},
		{"web.txt", "[Service]\nExecStart=/bin/true\n", `unknown type "txt"`},
		{"broken.service", "[Service\nExecStart=/bin/true\n", "unit file does not parse"},
		{"empty.service", "", "has no options"},
		{"huge.service", "[Service]\nExecStart=/bin/true\nEnvironment=" + strings.Repeat("x", unitfile.MaxUnitFileSize) + "\n", "over the 262144-byte limit"},
		{"pin.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID=abc\nConflicts=pin*\n", "MachineID cannot be used with Conflicts"},
		{"glob.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nConflicts=a[\n", "bad glob"},
		{"we b.service", "[Service]\nExecStart=/bin/true\n", `contains ' '`},
		{"tpl@.service", "[Service]\nExecStart=/bin/true\n", ""},
	}
	for _, tc := range tests {
		if tc.err == "" {
			write(tc.file, tc.body)
			continue
		}
		_, err := pithctl(t, "submit", "--endpoint", ep, write(tc.file, tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("submit %s: %v, want %q", tc.file, err, tc.err)
		}
	}
	// A good file before a bad one: neither is stored.
	good := write("good.service", "[Service]\nExecStart=/bin/true\n")
	if _, err := pithctl(t, "submit", "--endpoint", ep, good, filepath.Join(dir, "bad.service")); err == nil || !strings.Contains(err.Error(), "MachineIDs") {
		t.Errorf("submit good bad: %v", err)
	}
	// A template cannot be started, only its instances.
	if _, err := pithctl(t, "start", "--endpoint", ep, "--no-block", filepath.Join(dir, "tpl@.service")); err == nil || !strings.Contains(err.Error(), "is a template: start an instance such as tpl@1.service") {
		t.Errorf("start of a template: %v", err)
	}
	if _, err := pithctl(t, "start", "--endpoint", ep, filepath.Join(dir, "nothere@2.service")); err == nil || !strings.Contains(err.Error(), "neither it nor its template") {
		t.Errorf("start without file or template: %v", err)
	}
	out := mustRun(t, "list-unit-files", "--endpoint", ep, "--no-legend")
	if out != "" {
		t.Fatalf("bad submissions stored units:\n%s", out)
	}
	// Resubmitting changed contents needs --replace.
	p := write("ok.service", "[Service]\nExecStart=/bin/true\n")
	if out := mustRun(t, "submit", "--endpoint", ep, p); out != "Unit ok.service\n" {
		t.Fatalf("submit: %q", out)
	}
	write("ok.service", "[Service]\nExecStart=/bin/false\n")
	if _, err := pithctl(t, "submit", "--endpoint", ep, p); err == nil || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("changed resubmit: %v", err)
	}
	mustRun(t, "submit", "--endpoint", ep, "--replace", p)
	if out := mustRun(t, "cat", "--endpoint", ep, "ok"); !strings.Contains(out, "/bin/false") {
		t.Fatalf("replace not applied:\n%s", out)
	}
	// A unit that fails to start: start reports the systemd state.
	_, err := pithctl(t, "start", "--endpoint", ep, "--block-timeout", "1s", "ok")
	if err == nil || !strings.Contains(err.Error(), "systemd: failed/failed") {
		t.Fatalf("failing start: %v", err)
	}
	if _, err := pithctl(t, "list-units", "--endpoint", "ftp://nowhere"); err == nil || !strings.Contains(err.Error(), "bad endpoint") {
		t.Fatalf("bad endpoint: %v", err)
	}
}

// fieldsOf normalizes tabwriter output: words joined by spaces, lines by |.
func fieldsOf(out string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "|")
}
