// Package daemon assembles pithd, the node agent: New builds, in order, the
// cluster's raft node, the KV store on it, the scheduler and the updater,
// and hands each what it needs of the others as Go values (the updater's
// health check asks the scheduler in-process, through the interface the
// update package declares); Run opens the listeners and runs them until
// its context ends. cmd/pithd only parses flags and the environment into a
// Config (Config.AddFlags, Config.Load) and calls New and Run; the
// first-boot stage (`pithd firstboot`) is agent/firstboot.
//
// Everything a Daemon holds is built here and reachable from it: no
// subsystem registers itself or keeps package-level state. The client
// ports, the fleet socket and every HTTP server are made in listen.go; the
// security mode (TLS, roles, --unix-socket) in secure.go.
package daemon

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/pith-os/pith/agent/cluster"
	"github.com/pith-os/pith/agent/gcpace"
	"github.com/pith-os/pith/agent/kv"
	"github.com/pith-os/pith/agent/update"
	"github.com/pith-os/pith/pki"
	"github.com/pith-os/pith/rebootlock"
)

// Config is everything `pithd run` is told: one field per flag (the
// flag's name is in AddFlags and in node's settings table).
type Config struct {
	KV       KVConfig
	Schedule ScheduleConfig
	Update   UpdateConfig
	// Log receives every subsystem's messages (default: text on stderr).
	Log *slog.Logger
}

// KVConfig is etcd's flags: the KV store and the cluster's raft.
type KVConfig struct {
	Enabled                  bool
	Name                     string
	NewMemberName            string
	DataDir                  string
	ListenClientURLs         []string
	AdvertiseClientURLs      []string
	ListenPeerURLs           []string
	InitialAdvertisePeerURLs []string
	InitialCluster           string
	InitialClusterState      string
	InitialClusterToken      string
	Discovery                string
	HeartbeatMS              int
	ElectionMS               int
	SnapshotCount            uint64
	SnapshotInterval         time.Duration
	MaxVoters                int
	MaxWatchers              int
	MaxRequestBytes          int64
	MaxValueBytes            int
	EnablePprof              bool
	ClientTLS, PeerTLS       pki.TLSInfo
	// UnixSocket serves every route to root without a certificate
	// ("" none).
	UnixSocket string
}

// ScheduleConfig is fleet's flags: the unit scheduler.
type ScheduleConfig struct {
	Enabled     bool
	Backend     string // systemd, sim, none or auto
	SimDir      string
	MachineID   string
	PublicIP    string
	Metadata    string
	AgentTTL    time.Duration
	FleetSocket string // "" default, "none" off
	// ReconcileInterval is how often the engine reconciles without a
	// change (fleet's engine_reconcile_interval; 0: the heartbeat interval).
	ReconcileInterval time.Duration
}

// UpdateConfig is the updater's flags.
type UpdateConfig struct {
	Server, Channel, Strategy string
	WindowStart, WindowLength string
	Group                     string
	// LockMax is how many machines may hold the reboot lock at once
	// (pith.update.max_holders); 0 leaves the semaphore as it is.
	LockMax             int
	Interval, LockRetry time.Duration
	// VerifyTimeout bounds how long a new release may take to become
	// healthy before the node goes back to the previous slot.
	VerifyTimeout time.Duration
	// UnitSettle is how long each scheduled unit must have run for the
	// node to count as healthy after an update.
	UnitSettle time.Duration
	KeyDirs    []string
	// ExtraKeys are trusted release keys from user-data
	// (pith.update.public_keys, read by Load from Settings).
	ExtraKeys                    []ed25519.PublicKey
	Disk, ESP, StateDir          string
	Running, RebootCommand       string
	Cmdline, Settings, OSRelease string
	UpdateConf                   string
}

// Daemon is one running pithd.
type Daemon struct {
	cfg Config
	log *slog.Logger
	// mux serves the client port next to /v2/keys (members, fleet API,
	// locks, update status...).
	mux *http.ServeMux

	// Each nil when off.
	node     *cluster.Node
	kvServer *kv.Server
	sched    *scheduler
	updater  *update.Agent
	reports  *update.Reporter
	// lockKV is the reboot lock's store (nil without the KV).
	lockKV rebootlock.KV

	clients []*http.Server
	errc    chan error
}

// New builds pithd from cfg: the cluster and KV (with discovery, which
// may wait for the rest of the cluster), then the scheduler on the
// cluster's log, then the updater, which checks health with the KV and the
// scheduler. Nothing listens or runs until Run.
func New(ctx context.Context, cfg Config) (*Daemon, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	d := &Daemon{cfg: cfg, log: cfg.Log, mux: http.NewServeMux(), errc: make(chan error, 4)}
	if err := d.buildKV(ctx); err != nil {
		return nil, err
	}
	var err error
	if d.sched, err = d.buildScheduler(); err != nil {
		d.stop()
		return nil, err
	}
	if err := d.buildUpdater(); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// gcHeadroom is how far pithd's heap may grow past its live data before a
// collection (agent/gcpace): with a few MiB live, Go's default collected
// every 150 or so writes, which cost the KV's p99 at one client.
const gcHeadroom = 32 << 20

// Run starts the raft node and the listeners, then the scheduler's agent
// and the updater, and runs until ctx ends or a listener fails.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.stop()
	go gcpace.Run(ctx, gcHeadroom, 10*time.Second, d.log)
	if err := d.listen(); err != nil {
		return err
	}
	d.handleHangup(ctx)
	if d.cfg.KV.UnixSocket != "" {
		if err := d.serveRootSocket(ctx, d.cfg.KV.UnixSocket, d.guard(d.clientHandler())); err != nil {
			return err
		}
	}
	if err := d.startScheduler(ctx); err != nil {
		return err
	}
	d.startUpdater(ctx)
	d.log.Info("pithd running", "name", d.cfg.KV.Name, "kv", d.cfg.KV.Enabled)
	select {
	case <-ctx.Done():
	case err := <-d.errc:
		return err
	}
	d.log.Info("pithd stopping")
	return nil
}

// stop closes the client listeners and stops raft.
func (d *Daemon) stop() {
	for _, s := range d.clients {
		// Watches are long polls: close rather than wait for them.
		_ = s.Close()
	}
	if d.node != nil {
		if err := d.node.Stop(); err != nil {
			d.log.Warn("raft shutdown", "err", err)
		}
	}
}
