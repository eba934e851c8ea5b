package update

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/node/crashpoint"
	"github.com/pith-os/pith/rebootlock"
)

// Slots is the machine's A/B mechanism as the agent needs it. On a node it
// is backed by image/slot (GPT gptprio bits + grubenv) and the mounted ESP;
// see NewDiskSlots.
type Slots interface {
	// Running is the slot the machine booted ("a" or "b").
	Running() (string, error)
	// Invalidate makes a slot unbootable before it is overwritten, so a
	// crash mid-write never boots half a release.
	Invalidate(slot string) error
	// USRTarget is where the slot's USR payload goes (and, for the running
	// slot, where a delta's base is read from).
	USRTarget(slot string) (channels.Target, error)
	// KernelPath and InitrdPath are the slot's files on the mounted ESP.
	KernelPath(slot string) string
	InitrdPath(slot string) string
	// SetVerity checks the written slot's USR against the signed dm-verity
	// root hash and gives the slot's boot entry that hash (DiskSlots).
	SetVerity(slot, rootHash string) error
	// SetTrial arranges a one-time trial boot of the slot.
	SetTrial(slot string) error
	// MarkGood makes the slot the default.
	MarkGood(slot string) error
}

// Rebooter reboots the machine (systemd on a node; a hook in simulations).
type Rebooter interface {
	Reboot(ctx context.Context, reason string) error
}

// Config is the agent's configuration (cloud-config coreos.update and
// coreos.locksmith, or pith.update).
type Config struct {
	Server    string // channel server URL (coreos.update.server)
	Channel   string // coreos.update.group
	Strategy  Strategy
	Window    *Window
	Group     string // locksmith reboot group ("" = default semaphore)
	MachineID string
	// Running is the version of the release this machine booted.
	Running  string
	Platform string // GOOS/GOARCH
	Keys     *channels.Keyring
	// StateDir keeps downloads and state.json (on ROOT, e.g. /var/lib/pith/update).
	StateDir string
	// Interval between channel checks (default 1h), with up to 10% jitter
	// so a fleet does not poll in step.
	Interval time.Duration
	// LockRetry bounds the wait between attempts to take the reboot
	// semaphore (default 30s); a KV that can watch wakes the waiter sooner,
	// when the semaphore changes.
	LockRetry time.Duration
	// HTTP client for the channel server (tests, TLS roots); nil = default.
	Client func(*channels.Client)
	// VerifyTimeout bounds how long a node booted on a new release may
	// take to become healthy (default 10m); then it goes back to the
	// previous slot, so it never holds the reboot lock forever.
	VerifyTimeout time.Duration
	// BootID names this boot (default: the kernel's random boot_id), so
	// a pithd restart is not taken for a reboot.
	BootID string
}

// DefaultVerifyTimeout is Config.VerifyTimeout's default.
const DefaultVerifyTimeout = 10 * time.Minute

// The update agent's API types (GET /pith/v1/update, the history in
// state.json), its phases and stages are package node's (UpdateStatus,
// PhaseIdle, StageArmed...), shared with pithctl.

// persisted is state.json.
type persisted struct {
	Pending *node.UpdatePending `json:"pending,omitempty"`
	// Bad versions came back as rollbacks; they are never tried again.
	Bad      []string           `json:"bad,omitempty"`
	LockHeld bool               `json:"lock_held,omitempty"`
	History  []node.UpdateEvent `json:"history,omitempty"`
	// Good is the release last marked good, and its slot.
	Good *goodSlot `json:"good,omitempty"`
}

// goodSlot is a release marked good on a slot.
type goodSlot struct {
	Slot    string `json:"slot"`
	Version string `json:"version"`
}

const maxHistory = 50

// Agent is pithd's update subsystem.
type Agent struct {
	cfg   Config
	slots Slots
	// cut, when set (tests), is called at each point where a power cut
	// would leave a distinct state on disk; an error stops the step there
	// as a cut would.
	cut    func(point string) error
	reboot Rebooter
	kv     rebootlock.KV // nil: not in a cluster
	// Healthy reports nil once the node is healthy after a boot (pithd up,
	// KV joined, scheduled units started); the agent marks the slot good
	// and releases the reboot lock only then.
	Healthy func(ctx context.Context) error
	now     func() time.Time
	// after is time.After; tests see the pauses of the lock release.
	after func(time.Duration) <-chan time.Time
	log   *slog.Logger

	// Notify, when set, hears each phase change (ev nil) and history event
	// (the channel-server reporter, report.go). It must not block; for
	// events it is called with the agent's lock held.
	Notify func(p node.UpdatePhase, ev *node.UpdateEvent)

	mu     sync.Mutex
	st     persisted
	status node.UpdateStatus
	check  chan struct{}
}

// New makes an agent. kv may be nil (no cluster).
func New(cfg Config, slots Slots, reboot Rebooter, kv rebootlock.KV, log *slog.Logger) (*Agent, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Hour
	}
	if cfg.LockRetry <= 0 {
		cfg.LockRetry = 30 * time.Second
	}
	if cfg.Strategy == "" {
		cfg.Strategy = StrategyBestEffort
	}
	if cfg.VerifyTimeout <= 0 {
		cfg.VerifyTimeout = DefaultVerifyTimeout
	}
	if cfg.BootID == "" {
		// Unreadable (not Linux): every start counts as a boot, as before.
		b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
		cfg.BootID = strings.TrimSpace(string(b))
	}
	if cfg.MachineID == "" {
		return nil, errors.New("update: machine id is required (the reboot lock names its holder)")
	}
	if _, err := channels.ParseVersion(cfg.Running); err != nil {
		return nil, fmt.Errorf("update: running version: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "downloads"), 0o700); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, slots: slots, reboot: reboot, kv: kv, now: time.Now, after: time.After, log: log, check: make(chan struct{}, 1)}
	a.Healthy = func(context.Context) error { return nil }
	if err := a.load(); err != nil {
		return nil, err
	}
	a.status = node.UpdateStatus{Phase: node.PhaseIdle, Running: cfg.Running, Channel: cfg.Channel, Pending: a.st.Pending, TrustedKeys: cfg.Keys.IDs()}
	return a, nil
}

func (a *Agent) statePath() string { return filepath.Join(a.cfg.StateDir, "state.json") }

func (a *Agent) load() error {
	b, err := os.ReadFile(a.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &a.st); err != nil {
		return fmt.Errorf("update state %s: %v (remove it to start afresh)", a.statePath(), err)
	}
	return nil
}

// save writes state.json atomically and durably; callers hold a.mu.
func (a *Agent) save() error {
	b, _ := json.MarshalIndent(a.st, "", "  ")
	return atomicfile.WriteFile(a.statePath(), b, 0o600)
}

func (a *Agent) event(version, kind, detail string) {
	a.st.History = append(a.st.History, node.UpdateEvent{Time: a.now().UTC(), Version: version, Kind: kind, Detail: detail})
	if len(a.st.History) > maxHistory {
		a.st.History = a.st.History[len(a.st.History)-maxHistory:]
	}
	a.log.Info("update: "+kind, "version", version, "detail", detail)
	if a.Notify != nil {
		a.Notify("", &node.UpdateEvent{Time: a.now().UTC(), Version: version, Kind: kind, Detail: detail})
	}
}

func (a *Agent) setPhase(p node.UpdatePhase) {
	a.mu.Lock()
	a.status.Phase = p
	a.mu.Unlock()
	if a.Notify != nil {
		a.Notify(p, nil)
	}
}

// Status returns a snapshot of the agent's state.
func (a *Agent) Status() node.UpdateStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	s.Pending = a.st.Pending
	s.History = slices.Clone(a.st.History)
	return s
}

// SetWaiting shows why the agent is waiting (empty: not waiting) as the
// status's last error; HealthCheck reports through it.
func (a *Agent) SetWaiting(reason string) {
	a.mu.Lock()
	a.status.LastError = reason
	a.mu.Unlock()
}

// CheckNow asks the running loop for a check at once (pithctl update check).
func (a *Agent) CheckNow() {
	select {
	case a.check <- struct{}{}:
	default:
	}
}

// hook is a cut point (see Agent.cut).
// On a node, a boot that names "update-"+point as its crash point stops
// here for good (node/crashpoint), for VM tests that cut the power there.
func (a *Agent) hook(point string) error {
	crashpoint.Reach("update-" + point)
	if a.cut == nil {
		return nil
	}
	return a.cut(point)
}

// setStage records the pending update's stage durably; callers hold a.mu.
func (a *Agent) setStage(st node.UpdateStage, reason string) error {
	a.st.Pending.Stage, a.st.Pending.Boot, a.st.Pending.Reason = st, a.cfg.BootID, reason
	return a.save()
}
