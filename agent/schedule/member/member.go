// Package member runs the scheduler on one cluster member: the schedule
// State on the cluster's log, the leader's engine and liveness table, the
// local agent with its unit backend, heartbeat delivery to the leader, and
// the HTTP handler for /fleet/v1 (forwarded to the leader from followers),
// the heartbeat endpoint and the per-machine unit inspection endpoint.
//
// It depends on the cluster only through the functions in Config, so
// pithd connects it to agent/cluster's Node with a few lines (see Config).
package member

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/agent/schedule/fleetapi"
	"github.com/pith-os/pith/fleetv1"
)

// Backend is a unit backend: agent/units' Systemd, or simunits.Sim where
// there is no systemd.
type Backend interface {
	schedule.UnitBackend
	fleetapi.Inspector
	// ActiveFor is systemd's state of a unit read now, and how long it has
	// been active (units.Manager.ActiveFor).
	ActiveFor(ctx context.Context, name string) (active, sub string, d time.Duration, err error)
}

// Config connects the scheduler to the cluster. With agent/cluster:
//
//	st := schedule.NewState()
//	node.Register(cluster.NamespaceSchedule, st)
//	svc, _ := member.New(member.Config{
//	    Machine: m, State: st, Backend: b,
//	    Propose: func(ctx context.Context, e []byte) (any, error) {
//	        res, _, err := node.Propose(ctx, cluster.NamespaceSchedule, e); return res, err },
//	    IsLeader: node.IsLeader, Forward: node.Forward,
//	})
//	node.OnLeader(func(ctx context.Context) { _, term := node.RaftStatus(); svc.Lead(ctx, term) })
//	go svc.RunAgent(ctx)
//	mux.Handle("/fleet/v1/", svc.Handler()); mux.Handle("/pith/v1/schedule/", svc.Handler()); mux.Handle("/pith/v1/units/", svc.Handler())
type Config struct {
	// Machine is this node (ID from /etc/machine-id, public IP, metadata).
	Machine schedule.Machine
	// State is this node's replica, fed by the log.
	State *schedule.State
	// Propose appends one entry on the leader and returns what State.Apply
	// returned for it.
	Propose func(ctx context.Context, entry []byte) (any, error)
	// IsLeader reports whether this node leads the log now.
	IsLeader func() bool
	// AppliedIndex is the last log index this node applied (all
	// namespaces). With it, the agent acts on its assignments only once
	// the replica caught up with the leader's index at the first
	// heartbeat; nil: at once.
	AppliedIndex func() uint64
	// Forward relays a client request to the leader (nil: single node).
	// Heartbeats travel this way too, so it must reach the leader's peer
	// port (agent/cluster's Node.Forward does).
	Forward func(w http.ResponseWriter, r *http.Request, body []byte) error
	// FromMember reports whether a request came from a cluster member
	// (agent/cluster's FromPeer: it arrived on the peer port). Heartbeats
	// are accepted only then; nil accepts none over HTTP (a single node's
	// agent delivers in-process).
	FromMember func(r *http.Request) bool
	// Backend runs this machine's units (nil: this node runs no units).
	Backend Backend
	// TTL after which a silent machine is dead (default 5 s).
	TTL time.Duration
	// Interval between heartbeats and periodic reconciles (default TTL/5).
	Interval time.Duration
	// ReconcileInterval, when set, is the engine's period instead
	// (fleet's engine_reconcile_interval); heartbeats keep Interval.
	ReconcileInterval time.Duration
	// Now is the clock of liveness (default time.Now).
	Now func() time.Time
	// Log gets errors that are retried and the catch-up wait (default:
	// discarded).
	Log *slog.Logger
}

// Scheduler is one member's scheduler.
type Scheduler struct {
	cfg   Config
	store *schedule.LogStore
	live  *schedule.Liveness
	agent *schedule.Agent
	mux   *http.ServeMux

	// The catch-up gate (see Config.AppliedIndex), touched only by the
	// heartbeat goroutine: target is the leader's index at the first
	// answered heartbeat, caughtUp closes once this node applied it.
	caughtUp  chan struct{}
	target    uint64
	hasTarget bool
	ready     bool
}

// New checks cfg and builds the scheduler.
func New(cfg Config) (*Scheduler, error) {
	switch {
	case cfg.State == nil:
		return nil, errors.New("scheduler: no State")
	case cfg.Propose == nil || cfg.IsLeader == nil:
		return nil, errors.New("scheduler: Propose and IsLeader are required")
	case cfg.Backend != nil && cfg.Machine.ID == "":
		return nil, errors.New("scheduler: a node that runs units needs a machine ID (/etc/machine-id)")
	}
	if cfg.Backend != nil {
		// Its heartbeats would be refused: fail at start, not silently.
		if err := schedule.ValidateMachine(cfg.Machine); err != nil {
			return nil, fmt.Errorf("scheduler: %w", err)
		}
	}
	if cfg.TTL <= 0 {
		cfg.TTL = schedule.DefaultTTL
	}
	if cfg.Interval <= 0 {
		cfg.Interval = cfg.TTL / 5
	}
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = cfg.Interval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{cfg: cfg, store: schedule.NewLogStore(cfg.State, cfg.Propose)}
	s.live = schedule.NewLiveness(cfg.Now, cfg.TTL)
	if cfg.Backend != nil {
		s.agent = schedule.NewAgent(cfg.Machine, cfg.State, cfg.Backend)
		if cfg.AppliedIndex != nil {
			s.caughtUp = make(chan struct{})
			s.agent.Gate = s.caughtUp
		}
	}
	s.mux = http.NewServeMux()
	api := fleetapi.New(s.store, s.live)
	s.mux.Handle(fleetv1.Prefix+"/", s.onLeader(api, fleetapi.MaxBody))
	s.mux.Handle(fleetapi.HeartbeatPath, s.membersOnly(s.onLeader(fleetapi.Heartbeats(s.live, cfg.IsLeader, cfg.AppliedIndex), schedule.MaxHeartbeatSize)))
	if cfg.Backend != nil {
		s.mux.Handle(fleetv1.UnitsPath, fleetapi.Units(cfg.Backend))
	}
	return s, nil
}

// Handler serves /fleet/v1/, the heartbeat path and /pith/v1/units/.
func (s *Scheduler) Handler() http.Handler { return s.mux }

// Liveness is the leader's heartbeat table (meaningful while leading).
func (s *Scheduler) Liveness() *schedule.Liveness { return s.live }

// Store is the scheduler's Store.
func (s *Scheduler) Store() schedule.Store { return s.store }

// LocalUnits returns what this machine must run (its assignments in the
// local replica, as the agent runs them) and what its agent last reported
// of each, by name: the in-process view pithd's update health check reads.
// It fails until the replica caught up with the leader (see
// Config.AppliedIndex): before that the assignments may be ones the leader
// undid while this machine was away. Without a Backend there is nothing.
func (s *Scheduler) LocalUnits() ([]*schedule.Unit, map[string]schedule.UnitReport, error) {
	if s.agent == nil {
		return nil, nil, nil
	}
	if s.caughtUp != nil {
		select {
		case <-s.caughtUp:
		default:
			return nil, nil, errors.New("the scheduler's replica has not caught up with the leader yet")
		}
	}
	reports := map[string]schedule.UnitReport{}
	for _, r := range s.agent.Heartbeat().Units {
		reports[r.Name] = r
	}
	return s.cfg.State.Assigned(s.cfg.Machine.ID), reports, nil
}

// UnitNow is one of this machine's assignments with systemd's state of it
// read at the call.
type UnitNow struct {
	Name    string
	Desired string
	// Active and Sub are systemd's ActiveState and SubState.
	Active, Sub string
	// ActiveFor is how long the unit has been active without a restart.
	ActiveFor time.Duration
}

// UnitsNow is LocalUnits with each unit's state asked of systemd now, not
// taken from the agent's last report: that report is refreshed only by a
// reconcile, so a unit seen active right after its start would still look
// active while it lies failed (what let pithd mark a release good whose
// unit never ran; see update.HealthCheck).
func (s *Scheduler) UnitsNow(ctx context.Context) ([]UnitNow, error) {
	assigned, _, err := s.LocalUnits()
	if err != nil || s.agent == nil {
		return nil, err
	}
	out := make([]UnitNow, 0, len(assigned))
	for _, u := range assigned {
		n := UnitNow{Name: u.Name, Desired: string(u.Desired)}
		n.Active, n.Sub, n.ActiveFor, err = s.cfg.Backend.ActiveFor(ctx, u.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// membersOnly refuses requests that did not come from a cluster member.
// A heartbeat decides which machines exist and what runs where (fleetctl
// start waits on it), so whoever reaches the client port or the unix
// socket must not be able to forge one: members reach the leader over the
// peer port, which is as trusted as raft itself (peer TLS with client
// certificates, or a private network). A secret of the scheduler's own
// would add nothing a peer-port attacker lacks: it could forge raft
// messages instead.
func (s *Scheduler) membersOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.FromMember == nil || !s.cfg.FromMember(r) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":{"code":403,"message":"heartbeats are accepted only from cluster members, over the peer port"}}`))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// onLeader serves h on the leader and forwards elsewhere: the leader holds
// the liveness table and unit reports, and proposes writes. limit is the
// body size the leader's handler reads, so what a follower forwards and
// what the leader accepts never differ.
func (s *Scheduler) onLeader(h http.Handler, limit int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.IsLeader() {
			h.ServeHTTP(w, r)
			return
		}
		if s.cfg.Forward == nil {
			unavailable(w, errors.New("this node is not the scheduler leader"))
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
		if err != nil {
			unavailable(w, err)
			return
		}
		if len(body) > limit {
			fleetapi.SendTooLarge(w, limit)
			return
		}
		if err := s.cfg.Forward(w, r, body); err != nil {
			unavailable(w, fmt.Errorf("no scheduler leader reachable: %v", err))
		}
	})
}

func unavailable(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	b := fmt.Sprintf(`{"error":{"code":503,"message":%q}}`, err.Error())
	w.Write([]byte(b))
}

// Lead runs the engine until ctx ends (leadership lost). Call it from the
// cluster's on-leader hook, after the leader applied all committed entries,
// with the raft term as fence.
func (s *Scheduler) Lead(ctx context.Context, term uint64) {
	// Soft state starts over: agents re-announce themselves within one
	// interval, and nobody is declared dead before one TTL has passed.
	s.live.Reset()
	eng := &schedule.Engine{Store: s.store, Live: s.live, Term: term, Placed: func(ps []schedule.Placement) {
		for _, p := range ps {
			s.cfg.Log.Info("schedule engine: placement", "unit", p.Unit, "from", p.From, "to", p.To, "reason", p.Reason)
		}
	}}
	eng.Run(ctx, s.cfg.ReconcileInterval, func(err error) { s.cfg.Log.Warn("schedule engine", "err", err) })
}

// RunAgent applies this machine's assignments and heartbeats the leader
// until ctx ends. Without a Backend it returns at once.
func (s *Scheduler) RunAgent(ctx context.Context) {
	if s.agent == nil {
		return
	}
	s.agent.Run(ctx, s.cfg.Interval, func(hb schedule.Heartbeat) {
		// A leader that hangs must not hold the next beats back past the
		// TTL: by then a new leader may be waiting for them.
		bctx, cancel := context.WithTimeout(ctx, s.cfg.TTL)
		defer cancel()
		idx, err := s.deliver(bctx, hb)
		if err != nil {
			if ctx.Err() == nil {
				s.cfg.Log.Warn("schedule heartbeat", "err", err)
			}
			return
		}
		s.catchUp(idx)
	}, func(err error) { s.cfg.Log.Warn("schedule agent", "err", err) })
}

// catchUp opens the agent's gate once this node applied the log as far as
// the leader had when it first answered a heartbeat. Until then the local
// replica may be an old snapshot: its assignments are what the leader
// undid while this machine was away.
func (s *Scheduler) catchUp(leaderIndex uint64) {
	if s.caughtUp == nil || s.ready {
		return
	}
	have := s.cfg.AppliedIndex()
	if !s.hasTarget {
		s.target, s.hasTarget = leaderIndex, true
		if have < s.target {
			// Once, not every beat: catching up is normal after a restart.
			s.cfg.Log.Info("schedule agent: waiting for this node's log to catch up with the leader's before acting on its assignments", "leader_index", s.target, "applied", have)
		}
	}
	if have < s.target {
		return
	}
	s.ready = true
	close(s.caughtUp)
}

// deliver hands a heartbeat to the leader: directly when this node leads,
// else through Forward (never through the log). It returns the leader's
// applied index (0 when this node leads, or the leader did not say).
func (s *Scheduler) deliver(ctx context.Context, hb schedule.Heartbeat) (uint64, error) {
	if n := hb.Clamp(); n > 0 {
		s.cfg.Log.Warn("schedule heartbeat: unit reports left out", "dropped", n, "max_units", schedule.MaxUnitsPerMachine)
	}
	if s.cfg.IsLeader() {
		s.live.Heartbeat(hb)
		return 0, nil
	}
	if s.cfg.Forward == nil {
		return 0, errors.New("not the leader and no way to reach it")
	}
	body, err := json.Marshal(hb)
	if err != nil {
		return 0, err
	}
	if len(body) > schedule.MaxHeartbeatSize {
		// Clamp and the machine check in New make this unreachable; say so
		// rather than be refused by the leader without knowing why.
		return 0, fmt.Errorf("heartbeat is %d bytes, over the %d-byte limit", len(body), schedule.MaxHeartbeatSize)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fleetapi.HeartbeatPath, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	rec := &recorder{header: http.Header{}}
	if err := s.cfg.Forward(rec, req, body); err != nil {
		return 0, err
	}
	if rec.code != http.StatusNoContent {
		return 0, fmt.Errorf("leader answered %d: %s", rec.code, bytes.TrimSpace(rec.body.Bytes()))
	}
	idx, _ := strconv.ParseUint(rec.header.Get(fleetapi.AppliedIndexHeader), 10, 64)
	return idx, nil
}

// recorder captures a forwarded response.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) { r.code = code }
