package main

// Multi-process scheduler test: three real pithd processes on 127.0.0.1
// with the simulated unit backend (this host has no systemd). Kill -9 the
// machine running a unit; the unit must come up on another machine.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/fleetv1"
	"github.com/pith-os/pith/internal/pithdtest"
	"github.com/pith-os/pith/unitfile"

	"github.com/pith-os/pith/agent/cluster"
	"github.com/pith-os/pith/agent/schedule/fleetapi"
)

type schedMember struct {
	id, client, peer, dir, log string
	proc                       *pithdtest.Proc
}

// startSchedCluster starts n pithd members with the simulated unit
// backend, each its own machine (metadata n=INDEX).
func startSchedCluster(t *testing.T, n int) []*schedMember {
	t.Helper()
	dir := t.TempDir()
	bin := pithdtest.Binary(t)
	var ms []*schedMember
	var ic []string
	for i := 0; i < n; i++ {
		m := &schedMember{id: fmt.Sprintf("%032x", 0xa0+i),
			client: fmt.Sprintf("http://127.0.0.1:%d", pithdtest.FreePort(t)),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", pithdtest.FreePort(t)),
			dir:    filepath.Join(dir, fmt.Sprintf("m%d", i)), log: filepath.Join(dir, fmt.Sprintf("m%d.log", i))}
		ms = append(ms, m)
		ic = append(ic, fmt.Sprintf("m%d=%s", i, m.peer))
	}
	for i, m := range ms {
		m.proc = pithdtest.Start(t, bin, m.log, "run", "--name", fmt.Sprintf("m%d", i), "--data-dir", m.dir,
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--initial-cluster", strings.Join(ic, ","), "--initial-cluster-token", "sched-test",
			"--unit-backend", "sim", "--machine-id", m.id, "--metadata", fmt.Sprintf("n=%d", i),
			"--agent-ttl", "1s", "--fleet-socket", filepath.Join(m.dir+".sock"))
	}
	return ms
}

func TestScheduleProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pithd processes")
	}
	ms := startSchedCluster(t, 3)
	ctx := context.Background()
	clients := make([]*fleetv1.Client, len(ms))
	for i, m := range ms {
		clients[i], _ = fleetv1.NewClient(m.client)
	}
	pithdtest.Poll(t, "three machines", func() (bool, string) {
		got, err := clients[0].Machines(ctx)
		return err == nil && len(got) == 3, fmt.Sprint(len(got), err)
	})
	// Two of the three machines reached the leader over the peer port; a
	// forged heartbeat on any client port or fleet socket is refused.
	forged := `{"machine":{"id":"evil","primaryIP":"10.6.6.6"},"units":[]}`
	for _, m := range ms {
		for _, c := range []*http.Client{http.DefaultClient, {Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", m.dir+".sock")
		}}}} {
			req, _ := http.NewRequest(http.MethodPost, m.client+fleetapi.HeartbeatPath, strings.NewReader(forged))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(cluster.ForwardedHeader, "m0")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("forged heartbeat to %s: %s %s", m.client, resp.Status, b)
			}
		}
	}
	got, err := clients[0].Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range got {
		if m.ID == "evil" {
			t.Fatalf("a forged heartbeat registered machine %+v", m)
		}
	}
	unit := func(name string, xfleet ...string) *fleetv1.Unit {
		u := &fleetv1.Unit{Name: name, DesiredState: "launched", Options: []*unitfile.UnitOption{{Section: "Service", Name: "ExecStart", Value: "/usr/bin/sleep infinity"}}}
		for _, x := range xfleet {
			k, v, _ := strings.Cut(x, "=")
			u.Options = append(u.Options, &unitfile.UnitOption{Section: "X-Fleet", Name: k, Value: v})
		}
		return u
	}
	// Write through different members: followers forward to the leader.
	for i, u := range []*fleetv1.Unit{unit("mongo@1.service", "Conflicts=mongo@*.service"), unit("mongo@2.service", "Conflicts=mongo@*.service"), unit("log.service", "Global=true")} {
		if err := clients[i].CreateUnit(ctx, u); err != nil {
			t.Fatalf("create %s via m%d: %v", u.Name, i, err)
		}
	}
	where := map[string]string{}
	for _, n := range []string{"mongo@1.service", "mongo@2.service"} {
		pithdtest.Poll(t, n+" launched", func() (bool, string) {
			u, err := clients[1].Unit(ctx, n)
			if err != nil || u == nil {
				return false, fmt.Sprint(err)
			}
			where[n] = u.MachineID
			return u.CurrentState == "launched", u.CurrentState + " " + u.MachineID + " " + u.Reason
		})
	}
	if where["mongo@1.service"] == where["mongo@2.service"] {
		t.Fatalf("conflicting units on one machine %s", where["mongo@1.service"])
	}
	// The same API on member 2's unix socket (mode 0600: root's, as
	// pithd.sock).
	sock := ms[2].dir + ".sock"
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("fleet socket: %v %v", fi, err)
	}
	uc, err := fleetv1.NewClient("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := uc.Unit(ctx, "mongo@2.service"); err != nil || u == nil || u.MachineID != where["mongo@2.service"] {
		t.Fatalf("over the unix socket: %+v %v", u, err)
	}
	pithdtest.Poll(t, "global unit on three machines", func() (bool, string) {
		st, err := clients[2].UnitStates(ctx, []string{"log.service"}, nil)
		n := 0
		for _, s := range st {
			if s.SystemdActiveState == "active" {
				n++
			}
		}
		return err == nil && n == 3, fmt.Sprint(n, err)
	})
	// Kill -9 the machine of mongo@1; it is rescheduled to the third one.
	victim := -1
	for i, m := range ms {
		if m.id == where["mongo@1.service"] {
			victim = i
		}
	}
	ms[victim].proc.Kill()
	alive := (victim + 1) % 3
	var newMachine string
	pithdtest.Poll(t, "mongo@1 rescheduled", func() (bool, string) {
		u, err := clients[alive].Unit(ctx, "mongo@1.service")
		if err != nil || u == nil {
			return false, fmt.Sprint(err)
		}
		newMachine = u.MachineID
		return u.CurrentState == "launched" && u.MachineID != where["mongo@1.service"], u.CurrentState + " " + u.MachineID + " " + u.Reason
	})
	if newMachine == where["mongo@2.service"] {
		t.Fatalf("mongo@1 moved next to mongo@2 on %s", newMachine)
	}
	for i, m := range ms {
		if m.id == newMachine {
			if _, err := os.Stat(filepath.Join(ms[i].dir, "sim-units", "mongo@1.service")); err != nil {
				t.Fatalf("unit file not written on %s: %v", newMachine, err)
			}
		}
	}
	got, err = clients[alive].Machines(ctx)
	if err != nil || len(got) != 2 {
		t.Fatalf("machines after kill: %v %v", got, err)
	}
}
