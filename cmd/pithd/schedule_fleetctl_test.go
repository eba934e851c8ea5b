package main

// fleet's own fleetctl (v1.0.0, built from source through the Go module
// proxy by hack/fleetctl) against real pithd processes: the seed's mongo@
// walkthrough, as an operator with fleetctl and --endpoint would run it.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pith-os/pith/fleetv1"
	"github.com/pith-os/pith/internal/pithdtest"
)

// fleetctlBinary returns fleet's fleetctl: $PITH_FLEETCTL (make unit builds
// it into ~/.cache/pith/tools), else built here from hack/fleetctl. Only a
// failed build skips, loudly: the compatibility claim is then untested.
func fleetctlBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PITH_FLEETCTL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("PITH_FLEETCTL=%s: %v (make unit builds it from hack/fleetctl)", p, err)
		}
		return p
	}
	bin := filepath.Join(t.TempDir(), "fleetctl")
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags", "-X github.com/coreos/fleet/version.Version=1.0.0", "github.com/coreos/fleet/fleetctl")
	cmd.Dir = filepath.Join("..", "..", "hack", "fleetctl")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("SKIPPED, FLEET COMPATIBILITY UNTESTED: fleet's fleetctl could not be built from hack/fleetctl "+
			"(needs the Go module proxy or a warm module cache; make unit builds it into ~/.cache/pith/tools): %v\n%s", err, out)
	}
	return bin
}

type fleetctl struct {
	t   *testing.T
	bin string
	dir string
}

// run runs fleetctl against endpoint and returns stdout, stderr and
// whether it exited 0. --request-timeout is per request, generous for
// this shared machine; fleetctl's own waits have no limit.
func (f fleetctl) run(endpoint string, args ...string) (string, string, bool) {
	f.t.Helper()
	cmd := exec.Command(f.bin, append([]string{"--endpoint", endpoint, "--request-timeout", "60"}, args...)...)
	cmd.Dir = f.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	f.t.Logf("fleetctl %s -> %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	return out.String(), errb.String(), err == nil
}

func (f fleetctl) ok(endpoint string, args ...string) string {
	f.t.Helper()
	out, errs, ok := f.run(endpoint, args...)
	if !ok {
		f.t.Fatalf("fleetctl %s failed: %s%s", strings.Join(args, " "), out, errs)
	}
	// fleetctl prints some failures and still exits 0.
	if strings.Contains(errs, "panic:") || strings.Contains(errs, "Error") {
		f.t.Fatalf("fleetctl %s reported an error: %s", strings.Join(args, " "), errs)
	}
	return out
}

// rows splits --no-legend output into fields.
func rows(out string) [][]string {
	var r [][]string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			r = append(r, strings.Fields(l))
		}
	}
	return r
}

const mongoTemplate = `[Unit]
Description=MongoDB %i

[Service]
ExecStart=/usr/bin/sleep infinity

[X-Fleet]
Conflicts=mongo@*.service
`

func TestFleetctlWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fleetctl and runs pithd processes")
	}
	f := fleetctl{t: t, bin: fleetctlBinary(t), dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(f.dir, "mongo@.service"), []byte(mongoTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	ms := startSchedCluster(t, 3)
	ctx := context.Background()
	api, _ := fleetv1.NewClient(ms[0].client)
	pithdtest.Poll(t, "three machines", func() (bool, string) {
		got, err := api.Machines(ctx)
		return err == nil && len(got) == 3, fmt.Sprint(len(got), err)
	})
	// Each command through a different member: followers forward.
	ep := func(i int) string { return ms[i%len(ms)].client }

	out := f.ok(ep(0), "list-machines", "--full", "--no-legend")
	var machines []string
	for _, r := range rows(out) {
		if len(r) != 3 || r[1] != "127.0.0.1" || !strings.HasPrefix(r[2], "n=") {
			t.Fatalf("list-machines row %q", r)
		}
		machines = append(machines, r[0]+" "+r[2])
	}
	sort.Strings(machines)
	want := fmt.Sprintf("[%s n=0 %s n=1 %s n=2]", ms[0].id, ms[1].id, ms[2].id)
	if fmt.Sprint(machines) != want {
		t.Fatalf("list-machines: %v, want %s", machines, want)
	}
	// The same API on the unix socket, as fleetctl's default endpoint.
	if out := f.ok("unix://"+ms[2].dir+".sock", "list-machines", "--no-legend"); len(rows(out)) != 3 {
		t.Fatalf("list-machines over the unix socket: %q", out)
	}

	f.ok(ep(1), "submit", "mongo@.service")
	out = f.ok(ep(2), "list-unit-files", "--full", "--no-legend", "--fields", "unit,dstate,state")
	if r := rows(out); len(r) != 1 || strings.Join(r[0], " ") != "mongo@.service inactive inactive" {
		t.Fatalf("list-unit-files after submit: %q", out)
	}
	// fleetctl cat prints back the file as submitted.
	if out := f.ok(ep(0), "cat", "mongo@.service"); strings.TrimSpace(out) != strings.TrimSpace(mongoTemplate) {
		t.Fatalf("cat: %q", out)
	}

	// start waits until both are launched and systemd says active.
	out = f.ok(ep(1), "start", "mongo@1", "mongo@2")
	for _, n := range []string{"mongo@1.service", "mongo@2.service"} {
		if !strings.Contains(out, "Unit "+n+" launched") {
			t.Fatalf("start did not report %s launched: %q", n, out)
		}
	}
	out = f.ok(ep(2), "list-units", "--full", "--no-legend", "--fields", "unit,machine,active,sub")
	where := map[string]string{}
	for _, r := range rows(out) {
		if len(r) != 4 || r[2] != "active" || r[3] != "running" {
			t.Fatalf("list-units row %q", r)
		}
		id, ip, _ := strings.Cut(r[1], "/")
		if ip != "127.0.0.1" {
			t.Fatalf("list-units machine %q", r[1])
		}
		where[r[0]] = id
	}
	if len(where) != 2 || where["mongo@1.service"] == "" || where["mongo@1.service"] == where["mongo@2.service"] {
		t.Fatalf("mongo@1 and mongo@2 must run on two machines: %v", where)
	}
	for n, m := range where {
		u, err := api.Unit(ctx, n)
		if err != nil || u.MachineID != m || u.CurrentState != "launched" {
			t.Fatalf("%s per the API: %+v %v (fleetctl saw %s)", n, u, err, m)
		}
	}
	out = f.ok(ep(0), "list-unit-files", "--full", "--no-legend", "--fields", "unit,dstate,state,target")
	for _, r := range rows(out) {
		if r[0] == "mongo@.service" {
			continue
		}
		if len(r) != 4 || r[1] != "launched" || r[2] != "launched" || !strings.HasPrefix(r[3], where[r[0]]+"/") {
			t.Fatalf("list-unit-files row %q (placed on %v)", r, where)
		}
	}

	// stop keeps the unit loaded on its machine.
	f.ok(ep(1), "stop", "mongo@1")
	pithdtest.Poll(t, "mongo@1 loaded, inactive", func() (bool, string) {
		out, _, _ := f.run(ep(2), "list-units", "--full", "--no-legend", "--fields", "unit,machine,active")
		for _, r := range rows(out) {
			if r[0] == "mongo@1.service" {
				return len(r) == 3 && r[1] == where["mongo@1.service"]+"/127.0.0.1" && r[2] == "inactive", out
			}
		}
		return false, out
	})
	out = f.ok(ep(2), "list-unit-files", "--no-legend", "--fields", "unit,dstate,state")
	if !strings.Contains(strings.Join(strings.Fields(out), " "), "mongo@1.service loaded loaded") {
		t.Fatalf("list-unit-files after stop: %q", out)
	}

	// unload takes mongo@2 off its machine; load puts it back, not started.
	f.ok(ep(0), "unload", "mongo@2")
	out = f.ok(ep(1), "list-unit-files", "--no-legend", "--fields", "unit,dstate,state,target")
	if !strings.Contains(strings.Join(strings.Fields(out), " "), "mongo@2.service inactive inactive -") {
		t.Fatalf("list-unit-files after unload: %q", out)
	}
	out = f.ok(ep(2), "load", "mongo@2")
	if !strings.Contains(out, "Unit mongo@2.service loaded") {
		t.Fatalf("load: %q", out)
	}

	// Bad input comes back as fleetctl's error with pithd's reason, and
	// nothing is stored.
	bad := "[Service]\nExecStart=/bin/true\n[X-Fleet]\nBogus=1\n"
	if err := os.WriteFile(filepath.Join(f.dir, "bad.service"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errs, ok := f.run(ep(0), "submit", "bad.service"); ok || !strings.Contains(errs, `unrecognized requirement in [X-Fleet] section: "Bogus"`) {
		t.Fatalf("submit of a unit with an unknown X-Fleet key: ok=%v %s%s", ok, out, errs)
	}

	f.ok(ep(1), "destroy", "mongo@1", "mongo@2", "mongo@.service")
	if out := f.ok(ep(2), "list-unit-files", "--no-legend"); strings.TrimSpace(out) != "" {
		t.Fatalf("list-unit-files after destroy: %q", out)
	}
	pithdtest.Poll(t, "no unit states", func() (bool, string) {
		out, _, ok := f.run(ep(0), "list-units", "--no-legend")
		return ok && strings.TrimSpace(out) == "", out
	})
}
