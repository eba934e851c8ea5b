package daemon

// The scheduler: fleet's model on the cluster's raft (namespace
// schedule), the engine on the leader, this machine's agent, and fleet's
// v1 API on the client port and on a unix socket.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/agent/cluster"
	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/agent/schedule/fleetapi"
	"github.com/pith-os/pith/agent/schedule/member"
	"github.com/pith-os/pith/agent/units"
	"github.com/pith-os/pith/agent/units/simunits"
	"github.com/pith-os/pith/agent/update"
	"github.com/pith-os/pith/fleetv1"
)

// scheduler is the scheduler as built for this node.
type scheduler struct {
	svc *member.Scheduler
	// closer releases the unit backend (systemd's D-Bus connection).
	closer func()
	// socket is the fleet API's unix socket ("" for none).
	socket string
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

func (d *Daemon) defaultPublicIP() string {
	for _, u := range d.cfg.KV.AdvertiseClientURLs {
		if p, err := url.Parse(u); err == nil {
			if ip := net.ParseIP(p.Hostname()); ip != nil {
				return ip.String()
			}
		}
	}
	return ""
}

// unitBackend returns how units run here (nil: none), its closer, and
// the backend's name with auto resolved.
func (d *Daemon) unitBackend(name string) (member.Backend, func(), string, error) {
	f := &d.cfg.Schedule
	if name == "auto" {
		name = "none"
		if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
			name = "systemd"
		}
	}
	switch name {
	case "systemd":
		// No timeout context here: go-systemd hands it to godbus, which
		// closes the connection when the context ends. A cancelled one left
		// every later call failing with "dbus: connection closed by user"
		// (found by the e2e cluster test: no scheduled unit ever started).
		s, err := units.NewSystemd(context.Background(), units.DefaultDir)
		if err != nil {
			return nil, nil, "", err
		}
		return s, s.Close, name, nil
	case "sim":
		dir := f.SimDir
		if dir == "" {
			dir = filepath.Join(d.cfg.KV.DataDir, "sim-units")
		}
		s, err := simunits.New(dir)
		if err != nil {
			return nil, nil, "", err
		}
		d.log.Warn("unit backend is SIMULATED: units are not really started", "dir", dir)
		return s, nil, name, nil
	case "none":
		return nil, nil, name, nil
	}
	return nil, nil, "", fmt.Errorf("--unit-backend %q: use systemd, sim, none or auto", f.Backend)
}

// buildScheduler registers the scheduler's state on the cluster's log,
// its engine as a leader hook, and the fleet API on the client mux. It
// builds nothing with --schedule=false or without the KV (the scheduler
// lives on its raft).
func (d *Daemon) buildScheduler() (*scheduler, error) {
	f := &d.cfg.Schedule
	if !f.Enabled {
		return nil, nil
	}
	if d.node == nil {
		d.log.Warn("scheduler off: it lives on the KV's raft, which --kv=false disables")
		return nil, nil
	}
	md, err := schedule.ParseMetadata(f.Metadata)
	if err != nil {
		return nil, fmt.Errorf("--metadata: %w (use key=value,key=value)", err)
	}
	b, closer, backend, err := d.unitBackend(f.Backend)
	if err != nil {
		return nil, err
	}
	m := schedule.Machine{ID: f.MachineID, PublicIP: f.PublicIP, Metadata: md}
	if b != nil && m.ID == "" {
		if m.ID, err = readMachineID(); err != nil {
			return nil, err
		}
	}
	if m.PublicIP == "" {
		m.PublicIP = d.defaultPublicIP()
	}
	sched := &scheduler{closer: closer, socket: f.FleetSocket}
	if sched.socket == "" && b != nil {
		sched.socket = "/var/run/fleet.sock"
	}
	node := d.node
	st := schedule.NewState()
	if err := node.Register(cluster.NamespaceSchedule, st); err != nil {
		return nil, err
	}
	svc, err := member.New(member.Config{
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
		// member.Scheduler.membersOnly).
		FromMember:        cluster.FromPeer,
		TTL:               f.AgentTTL,
		ReconcileInterval: f.ReconcileInterval,
		Log:               d.log,
	})
	if err != nil {
		return nil, err
	}
	sched.svc = svc
	node.OnLeader(func(ctx context.Context) {
		_, term := node.RaftStatus()
		svc.Lead(ctx, term)
	})
	h := svc.Handler()
	d.mux.Handle(fleetv1.Prefix+"/", h)
	d.mux.Handle(fleetapi.HeartbeatPath, h)
	d.mux.Handle(fleetv1.UnitsPath, h)
	d.log.Info("scheduler ready", "machine", m.ID, "ip", m.PublicIP, "backend", backend, "ttl", f.AgentTTL)
	return sched, nil
}

// startScheduler runs this machine's agent and opens the fleet socket.
func (d *Daemon) startScheduler(ctx context.Context) error {
	s := d.sched
	if s == nil {
		return nil
	}
	go func() {
		s.svc.RunAgent(ctx)
		if s.closer != nil {
			s.closer()
		}
	}()
	if s.socket == "" || s.socket == "none" {
		return nil
	}
	return d.serveFleetSocket(ctx, s.socket, s.svc.Handler())
}

// machineUnits is the updater's view of the scheduler (update.ScheduledUnits):
// this machine's assignments in the local replica, each with systemd's
// state read at the call.
type machineUnits struct{ svc *member.Scheduler }

func (m machineUnits) MachineUnits(ctx context.Context) ([]update.UnitState, error) {
	now, err := m.svc.UnitsNow(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]update.UnitState, 0, len(now))
	for _, u := range now {
		out = append(out, update.UnitState{Name: u.Name, Desired: u.Desired, Active: u.Active, Sub: u.Sub, ActiveFor: u.ActiveFor})
	}
	return out, nil
}
