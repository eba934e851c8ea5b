package main

// The scheduler subsystem: fleet's model on the cluster's raft (namespace
// schedule), the engine on the leader, this machine's agent, and fleet's
// v1 API on the client port and on a unix socket.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/agent/cluster"
	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/agent/schedule/fleetapi"
	"github.com/pith-os/pith/agent/schedule/service"
	"github.com/pith-os/pith/agent/units"
	"github.com/pith-os/pith/agent/units/simunits"
)

// schedFlags follow fleet's names (also read from FLEET_<NAME>, as
// coreos-cloudinit's coreos.fleet section sets them).
var schedFlags struct {
	enabled     bool
	backend     string
	simDir      string
	machineID   string
	publicIP    string
	metadata    string
	agentTTL    time.Duration
	fleetSocket string
	fs          *pflag.FlagSet
}

var schedFlagNames = []string{"unit-backend", "machine-id", "public-ip", "metadata", "agent-ttl", "fleet-socket"}

func init() {
	registerSubsystem(subsystem{
		Name:  "schedule",
		Order: 10,
		Flags: func(fs *pflag.FlagSet) {
			f := &schedFlags
			f.fs = fs
			fs.BoolVar(&f.enabled, "schedule", true, "run the fleet-compatible unit scheduler (needs --kv)")
			fs.StringVar(&f.backend, "unit-backend", "auto", "how units run here: systemd, sim (simulated, for tests on hosts without systemd), none, or auto (systemd when present, else none)")
			fs.StringVar(&f.simDir, "sim-units-dir", "", "unit file directory of the simulated backend (default DATA_DIR/sim-units)")
			fs.StringVar(&f.machineID, "machine-id", "", "this machine's ID (default: /etc/machine-id)")
			fs.StringVar(&f.publicIP, "public-ip", "", "IP other machines and pithctl reach this one at (default: host of --advertise-client-urls)")
			fs.StringVar(&f.metadata, "metadata", "", "machine metadata for MachineMetadata=, as key=value,key=value")
			fs.DurationVar(&f.agentTTL, "agent-ttl", schedule.DefaultTTL, "a machine silent this long is dead and its units move")
			fs.StringVar(&f.fleetSocket, "fleet-socket", "", "unix socket serving /fleet/v1 (default /var/run/fleet.sock on machines that run units; \"none\" to disable)")
		},
		Setup: setupSchedule,
		Start: startSchedule,
	})
}

var sched struct {
	svc    *service.Service
	closer func()
}

// fleetEnv applies FLEET_<NAME> variables to flags not set otherwise.
func fleetEnv(fs *pflag.FlagSet) error {
	var errs []error
	for _, n := range schedFlagNames {
		f := fs.Lookup(n)
		if f == nil || f.Changed {
			continue
		}
		key := "FLEET_" + strings.ToUpper(strings.ReplaceAll(n, "-", "_"))
		if v, ok := os.LookupEnv(key); ok {
			if err := fs.Set(n, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", key, v, err))
			}
		}
	}
	return errors.Join(errs...)
}

func readMachineID() (string, error) {
	b, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		return "", fmt.Errorf("no machine ID: %v (give --machine-id)", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", errors.New("/etc/machine-id is empty (give --machine-id)")
	}
	return id, nil
}

func defaultPublicIP() string {
	for _, u := range kvFlags.advertiseClientURLs {
		if p, err := url.Parse(u); err == nil {
			if ip := net.ParseIP(p.Hostname()); ip != nil {
				return ip.String()
			}
		}
	}
	return ""
}

func setupSchedule(env *runEnv) error {
	f := &schedFlags
	if !f.enabled {
		return nil
	}
	if env.Cluster == nil {
		env.Log.Warn("scheduler off: it lives on the KV's raft, which --kv=false disables")
		return nil
	}
	if f.fs != nil {
		if err := fleetEnv(f.fs); err != nil {
			return err
		}
	}
	md, err := schedule.ParseMetadata(f.metadata)
	if err != nil {
		return fmt.Errorf("--metadata: %w (use key=value,key=value)", err)
	}
	backend := f.backend
	if backend == "auto" {
		backend = "none"
		if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
			backend = "systemd"
		}
	}
	var b service.Backend
	switch backend {
	case "systemd":
		// No timeout context here: go-systemd hands it to godbus, which
		// closes the connection when the context ends. A cancelled one left
		// every later call failing with "dbus: connection closed by user"
		// (found by the e2e cluster test: no scheduled unit ever started).
		s, err := units.NewSystemd(context.Background(), units.DefaultDir)
		if err != nil {
			return err
		}
		b, sched.closer = s, s.Close
	case "sim":
		dir := f.simDir
		if dir == "" {
			dir = filepath.Join(env.DataDir, "sim-units")
		}
		s, err := simunits.New(dir)
		if err != nil {
			return err
		}
		env.Log.Warn("unit backend is SIMULATED: units are not really started", "dir", dir)
		b = s
	case "none":
	default:
		return fmt.Errorf("--unit-backend %q: use systemd, sim, none or auto", f.backend)
	}
	m := schedule.Machine{ID: f.machineID, PublicIP: f.publicIP, Metadata: md}
	if b != nil && m.ID == "" {
		if m.ID, err = readMachineID(); err != nil {
			return err
		}
	}
	if m.PublicIP == "" {
		m.PublicIP = defaultPublicIP()
	}
	if f.fleetSocket == "" && b != nil {
		f.fleetSocket = "/var/run/fleet.sock"
	}
	node := env.Cluster
	st := schedule.NewState()
	if err := node.Register(cluster.NamespaceSchedule, st); err != nil {
		return err
	}
	svc, err := service.New(service.Config{
		Machine: m,
		State:   st,
		Backend: b,
		Propose: func(ctx context.Context, e []byte) (any, error) {
			res, _, err := node.Propose(ctx, cluster.NamespaceSchedule, e)
			return res, err
		},
		IsLeader: node.IsLeader,
		AppliedIndex: func() uint64 {
			i, _ := node.RaftStatus()
			return i
		},
		Forward: node.Forward,
		// Heartbeats only from members: over the peer port (see
		// service.Service.membersOnly).
		FromMember: cluster.FromPeer,
		TTL:        f.agentTTL,
		Logf:       func(format string, a ...any) { env.Log.Warn(fmt.Sprintf(format, a...)) },
	})
	if err != nil {
		return err
	}
	sched.svc = svc
	node.OnLeader(func(ctx context.Context) {
		_, term := node.RaftStatus()
		svc.Lead(ctx, term)
	})
	h := svc.Handler()
	env.Mux.Handle(fleetapi.Prefix+"/", h)
	env.Mux.Handle(fleetapi.HeartbeatPath, h)
	env.Mux.Handle(fleetapi.UnitsPath, h)
	env.Log.Info("scheduler ready", "machine", m.ID, "ip", m.PublicIP, "backend", backend, "ttl", f.agentTTL)
	return nil
}

func startSchedule(ctx context.Context, env *runEnv) error {
	svc := sched.svc
	if svc == nil {
		return nil
	}
	go func() {
		svc.RunAgent(ctx)
		if sched.closer != nil {
			sched.closer()
		}
	}()
	sock := schedFlags.fleetSocket
	if sock == "" || sock == "none" {
		return nil
	}
	// A socket left by a previous run would make Listen fail.
	if fi, err := os.Lstat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(sock)
	}
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		return fmt.Errorf("--fleet-socket: %w", err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("--fleet-socket %s: %w", sock, err)
	}
	// Whoever can write the socket controls the cluster's units: root and
	// the socket's group only, as fleet.socket had it.
	if err := os.Chmod(sock, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("--fleet-socket %s: %w", sock, err)
	}
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(sock)
	}()
	env.Log.Info("fleet API on unix socket", "path", sock)
	return nil
}
