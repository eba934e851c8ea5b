package update

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/channels"
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
	// LockRetry is the pause between attempts to take the reboot semaphore
	// (default 30s).
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

// Phase is what the agent is doing.
type Phase string

// Phases, shown by `pithctl update status`.
const (
	PhaseIdle          Phase = "idle"
	PhaseChecking      Phase = "checking"
	PhaseDownloading   Phase = "downloading"
	PhaseWriting       Phase = "writing"
	PhaseReady         Phase = "update ready, reboot needed"
	PhaseWaitingWindow Phase = "waiting for reboot window"
	PhaseWaitingLock   Phase = "waiting for reboot lock"
	PhaseRebooting     Phase = "rebooting"
	PhaseVerifying     Phase = "verifying new release"
	PhaseError         Phase = "error"
)

// Event is one line of the update history.
type Event struct {
	Time    time.Time `json:"time"`
	Version string    `json:"version"`
	Kind    string    `json:"kind"` // applied, updated, rollback
	Detail  string    `json:"detail,omitempty"`
}

// Pending is an applied release waiting for (or just back from) its reboot.
type Pending struct {
	Version string    `json:"version"`
	Slot    string    `json:"slot"`
	From    string    `json:"from"`
	Applied time.Time `json:"applied"`
	// Stage is how far the update got when it was last saved; after a
	// power cut it tells AfterBoot a trial that failed from one that
	// never started. "" (records of earlier releases) is StageArmed.
	Stage Stage `json:"stage,omitempty"`
	// Boot is the boot the stage was saved in.
	Boot string `json:"boot,omitempty"`
	// Reason says why a trial is being rolled back (StageUnhealthy).
	Reason string `json:"reason,omitempty"`
}

// Stage is a step of an update that state.json records before taking it.
type Stage string

// Stages, in order. Each is saved before the disk changes that follow it,
// so a cut anywhere leaves a record AfterBoot can finish from.
const (
	// StageWritten: slot, kernel and initrd written and verified; the
	// trial boot is being armed.
	StageWritten Stage = "written"
	// StageArmed: the trial boot is armed; the next boot tries the slot.
	StageArmed Stage = "armed"
	// StageHealthy: the slot came up healthy and is being marked good.
	StageHealthy Stage = "healthy"
	// StageUnhealthy: the slot did not become healthy in time; the node
	// is going back to the previous slot.
	StageUnhealthy Stage = "unhealthy"
)

// persisted is state.json.
type persisted struct {
	Pending *Pending `json:"pending,omitempty"`
	// Bad versions came back as rollbacks; they are never tried again.
	Bad      []string `json:"bad,omitempty"`
	LockHeld bool     `json:"lock_held,omitempty"`
	History  []Event  `json:"history,omitempty"`
}

const maxHistory = 50

// Status is the agent's state for `pithctl update status`.
type Status struct {
	Phase     Phase              `json:"phase"`
	Running   string             `json:"running"`
	Channel   string             `json:"channel"`
	Available string             `json:"available,omitempty"`
	Pending   *Pending           `json:"pending,omitempty"`
	Progress  *channels.Progress `json:"progress,omitempty"`
	LastCheck time.Time          `json:"last_check"`
	LastError string             `json:"last_error,omitempty"`
	History   []Event            `json:"history,omitempty"`
	// Timing of the last applied update, seconds.
	Timing map[string]float64 `json:"timing,omitempty"`
	// TrustedKeys are the ids of the release keys manifests are checked
	// against (the image's, the OEM partition's, user-data's).
	TrustedKeys []string `json:"trusted_keys"`

	// SecurityUpgrades are what the available release upgrades from
	// Debian's security archive, as its signed manifest says.
	SecurityUpgrades []string `json:"security_upgrades,omitempty"`
}

// Agent is pithd's update subsystem.
type Agent struct {
	cfg   Config
	slots Slots
	// cut, when set (tests), is called at each point where a power cut
	// would leave a distinct state on disk; an error stops the step there
	// as a cut would.
	cut    func(point string) error
	reboot Rebooter
	kv     KV // nil: not in a cluster
	// Healthy reports nil once the node is healthy after a boot (pithd up,
	// KV joined, scheduled units started); the agent marks the slot good
	// and releases the reboot lock only then.
	Healthy func(ctx context.Context) error
	now     func() time.Time
	logf    func(string, ...any)

	// Notify, when set, hears each phase change (ev nil) and history event
	// (the channel-server reporter, report.go). It must not block; for
	// events it is called with the agent's lock held.
	Notify func(p Phase, ev *Event)

	mu     sync.Mutex
	st     persisted
	status Status
	check  chan struct{}
}

// New makes an agent. kv may be nil (no cluster).
func New(cfg Config, slots Slots, reboot Rebooter, kv KV, logf func(string, ...any)) (*Agent, error) {
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
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "downloads"), 0o700); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, slots: slots, reboot: reboot, kv: kv, now: time.Now, logf: logf, check: make(chan struct{}, 1)}
	a.Healthy = func(context.Context) error { return nil }
	if err := a.load(); err != nil {
		return nil, err
	}
	a.status = Status{Phase: PhaseIdle, Running: cfg.Running, Channel: cfg.Channel, Pending: a.st.Pending, TrustedKeys: cfg.Keys.IDs()}
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
	a.st.History = append(a.st.History, Event{Time: a.now().UTC(), Version: version, Kind: kind, Detail: detail})
	if len(a.st.History) > maxHistory {
		a.st.History = a.st.History[len(a.st.History)-maxHistory:]
	}
	a.logf("update: %s %s %s", kind, version, detail)
	if a.Notify != nil {
		a.Notify("", &Event{Time: a.now().UTC(), Version: version, Kind: kind, Detail: detail})
	}
}

func (a *Agent) setPhase(p Phase) {
	a.mu.Lock()
	a.status.Phase = p
	a.mu.Unlock()
	if a.Notify != nil {
		a.Notify(p, nil)
	}
}

// Status returns a snapshot of the agent's state.
func (a *Agent) Status() Status {
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
func (a *Agent) hook(point string) error {
	if a.cut == nil {
		return nil
	}
	return a.cut(point)
}

// setStage records the pending update's stage durably; callers hold a.mu.
func (a *Agent) setStage(st Stage, reason string) error {
	a.st.Pending.Stage, a.st.Pending.Boot, a.st.Pending.Reason = st, a.cfg.BootID, reason
	return a.save()
}

// AfterBoot settles an update that a reboot was for, from whatever state a
// power cut left. Booted on the trial slot: wait until healthy (at most
// VerifyTimeout), mark it good, release the reboot lock; not healthy in
// time: go back to the previous slot. Back on the old slot after an armed
// trial: the trial failed; record a rollback and never try that version
// again. Back on the old slot before the trial was armed (or while it was
// being marked good): arm it again. Call it once at start, before Run.
func (a *Agent) AfterBoot(ctx context.Context) error {
	a.mu.Lock()
	var p Pending
	if a.st.Pending != nil {
		p = *a.st.Pending
	}
	pending, lockHeld := a.st.Pending != nil, a.st.LockHeld
	a.mu.Unlock()
	if !pending {
		if lockHeld {
			return a.releaseLock(ctx)
		}
		return nil
	}
	if p.Stage == "" {
		p.Stage = StageArmed
	}
	running, err := a.slots.Running()
	if err != nil {
		return err
	}
	sameBoot := p.Boot != "" && p.Boot == a.cfg.BootID
	switch {
	case p.Stage == StageUnhealthy && (running == p.Slot || sameBoot):
		// The way back was decided but the reboot did not happen.
		return a.rollBack(ctx, p.Slot, p.Reason)
	case running == p.Slot:
		return a.verify(ctx, p)
	case sameBoot && p.Stage == StageWritten:
		// pithd restarted while arming the trial: arm it (Run reboots).
		return a.arm(p.Slot)
	case sameBoot:
		return nil // still waiting for its reboot: Run takes it from here
	case p.Stage == StageWritten || p.Stage == StageHealthy:
		// A cut before the trial was armed, or while the slot that came
		// up healthy was being marked good: the slot's content is whole
		// (written and read back before the record), so try it again.
		a.mu.Lock()
		a.event(p.Version, "retry", fmt.Sprintf("booted slot %s, not %s: a cut came while the update was %s; arming the trial again", running, p.Slot, p.Stage))
		a.mu.Unlock()
		return a.arm(p.Slot)
	}
	// The trial was armed and this is another boot on the old slot: GRUB
	// went back by itself (the new kernel did not come up) or the agent
	// did (not healthy in time).
	//
	// GRUB does not count gptprio tries: left as SetTrial made them
	// (tries 1, top priority), the failed slot would still look bootable
	// to gptprio readers. It holds a release that did not come up: make
	// it unbootable until the next update rewrites it.
	if err := a.slots.Invalidate(p.Slot); err != nil {
		return fmt.Errorf("update: invalidate failed slot %s: %w", p.Slot, err)
	}
	why := fmt.Sprintf("slot %s did not come up", p.Slot)
	if p.Stage == StageUnhealthy {
		why = fmt.Sprintf("slot %s %s", p.Slot, p.Reason)
	}
	a.mu.Lock()
	a.st.Bad = append(a.st.Bad, p.Version)
	a.event(p.Version, "rollback", fmt.Sprintf("%s; running %s on slot %s; %s will not be retried", why, a.cfg.Running, running, p.Version))
	a.st.Pending = nil
	err = a.save()
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if lockHeld {
		return a.releaseLock(ctx)
	}
	return nil
}

// arm sets the trial boot of slot and records it (StageArmed).
func (a *Agent) arm(slot string) error {
	if err := a.slots.SetTrial(slot); err != nil {
		return fmt.Errorf("update: trial boot of slot %s: %w", slot, err)
	}
	if err := a.hook("trial-armed"); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Phase = PhaseReady
	return a.setStage(StageArmed, "")
}

// verify waits until the node is healthy on the trial slot, at most
// VerifyTimeout, then marks the slot good; not healthy by then, it rolls
// back.
func (a *Agent) verify(ctx context.Context, p Pending) error {
	a.setPhase(PhaseVerifying)
	if p.Stage != StageHealthy {
		vctx, cancel := context.WithTimeout(ctx, a.cfg.VerifyTimeout)
		err := a.Healthy(vctx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("update: node not healthy on %s, slot %s stays on trial: %w", p.Version, p.Slot, err)
		}
		if err != nil {
			reason := fmt.Sprintf("was not healthy within %s: %s", a.cfg.VerifyTimeout, healthReason(err))
			a.mu.Lock()
			err = a.setStage(StageUnhealthy, reason)
			a.mu.Unlock()
			if err != nil {
				return err
			}
			return a.rollBack(ctx, p.Slot, reason)
		}
		a.mu.Lock()
		err = a.setStage(StageHealthy, "")
		a.mu.Unlock()
		if err != nil {
			return err
		}
		if err := a.hook("healthy"); err != nil {
			return err
		}
	}
	if err := a.slots.MarkGood(p.Slot); err != nil {
		return fmt.Errorf("update: mark slot %s good: %w", p.Slot, err)
	}
	if err := a.hook("marked-good"); err != nil {
		return err
	}
	a.mu.Lock()
	a.event(p.Version, "updated", fmt.Sprintf("from %s; slot %s marked good", p.From, p.Slot))
	a.st.Pending = nil
	lockHeld := a.st.LockHeld
	err := a.save()
	a.mu.Unlock()
	a.setPhase(PhaseIdle)
	if err != nil {
		return err
	}
	if lockHeld {
		return a.releaseLock(ctx)
	}
	return nil
}

// healthReason is the health check's last complaint, without the context
// error wrapped around it.
func healthReason(err error) string {
	s := err.Error()
	if i := strings.Index(s, "(last: "); i >= 0 && strings.HasSuffix(s, ")") {
		return s[i+len("(last: ") : len(s)-1]
	}
	return s
}

// rollBack leaves a trial slot that did not become healthy: the slot is
// made unbootable (GRUB then boots saved_entry, the previous slot) and the
// machine reboots. The lock stays held across the reboot, so no other
// machine goes down meanwhile; AfterBoot on the old slot records the
// rollback with reason and releases it.
func (a *Agent) rollBack(ctx context.Context, slot, reason string) error {
	a.logf("update: rolling back from slot %s: %s", slot, reason)
	if err := a.slots.Invalidate(slot); err != nil {
		return fmt.Errorf("update: invalidate slot %s to roll back: %w", slot, err)
	}
	if err := a.hook("rollback-invalidated"); err != nil {
		return err
	}
	a.mu.Lock()
	a.status.Phase, a.status.LastError = PhaseRebooting, "rolling back: slot "+slot+" "+reason
	a.mu.Unlock()
	return a.reboot.Reboot(ctx, "rollback: slot "+slot+" "+reason)
}

func (a *Agent) releaseLock(ctx context.Context) error {
	if a.kv != nil {
		sem := &Semaphore{KV: a.kv, Key: GroupSemaphoreKey(a.cfg.Group)}
		if err := sem.Unlock(ctx, a.cfg.MachineID); err != nil && !errors.Is(err, ErrNotHolder) {
			return fmt.Errorf("update: release reboot lock: %w", err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.LockHeld = false
	return a.save()
}

// Run polls the channel until ctx ends: at start, every Interval (with
// jitter), and on CheckNow. Errors are recorded in Status and retried at
// the next poll.
func (a *Agent) Run(ctx context.Context) error {
	failures := 0
	for {
		wait := a.cfg.Interval + time.Duration(rand.Int64N(int64(a.cfg.Interval/10)+1))
		if err := a.CheckOnce(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			a.mu.Lock()
			a.status.Phase, a.status.LastError = PhaseError, strings.TrimSpace(err.Error())
			a.mu.Unlock()
			a.logf("update: %v", err)
			// A failed check (server or KV briefly away) is retried
			// sooner than the next regular poll: 30s, 1m, 2m, ...
			failures++
			if retry := 30 * time.Second << min(failures-1, 6); retry < wait {
				wait = retry
			}
		} else {
			failures = 0
			a.mu.Lock()
			a.status.LastError = ""
			a.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.check:
		case <-time.After(wait):
		}
	}
}

// CheckOnce checks the channel; when a newer release is there it applies
// it to the other slot and reboots as the strategy says.
func (a *Agent) CheckOnce(ctx context.Context) error {
	a.mu.Lock()
	pending := a.st.Pending
	a.status.LastCheck = a.now()
	a.mu.Unlock()
	switch {
	case pending == nil:
		applied, err := a.fetchAndApply(ctx)
		if err != nil || !applied {
			return err
		}
	case pending.Stage == StageUnhealthy:
		return nil // rolling back: the reboot is under way
	case pending.Stage == StageWritten:
		// Arming failed last time: the slot is written, arm it now.
		if err := a.arm(pending.Slot); err != nil {
			return err
		}
	}
	return a.rebootPhase(ctx)
}

// ErrNoTrustedKey: the node has no release key, so it cannot tell a real
// release from anyone's; it refuses to look rather than trust anything.
var ErrNoTrustedKey = errors.New("update: this node trusts no release key, so every release is refused; build the image with pith build --release-key FILE, or add pith.update.public_keys to user-data")

func (a *Agent) fetchAndApply(ctx context.Context) (bool, error) {
	if a.cfg.Keys.Len() == 0 {
		return false, ErrNoTrustedKey
	}
	a.setPhase(PhaseChecking)
	c, err := channels.NewClient(a.cfg.Server, channels.Policy{
		Keys: a.cfg.Keys, Channel: a.cfg.Channel, Platform: a.cfg.Platform, Running: a.cfg.Running,
	})
	if err != nil {
		return false, err
	}
	c.Progress = func(p channels.Progress) {
		a.mu.Lock()
		a.status.Progress = &p
		a.mu.Unlock()
	}
	if a.cfg.Client != nil {
		a.cfg.Client(c)
	}
	m, err := c.Manifest(ctx, "")
	if errors.Is(err, channels.ErrNotNewer) {
		a.setPhase(PhaseIdle)
		return false, nil // up to date
	}
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	a.status.Available = m.Version
	a.status.SecurityUpgrades = m.SecurityUpgrades
	bad := slices.Contains(a.st.Bad, m.Version)
	a.mu.Unlock()
	if bad {
		a.setPhase(PhaseIdle)
		return false, nil // rolled back before: wait for a newer release
	}
	return true, a.apply(ctx, c, m)
}

// apply downloads and verifies every payload, then writes the other slot.
// Nothing touches a partition before all payloads are verified.
func (a *Agent) apply(ctx context.Context, c *channels.Client, m *channels.Manifest) error {
	timing := map[string]float64{}
	running, err := a.slots.Running()
	if err != nil {
		return err
	}
	target := "b"
	if running == "b" {
		target = "a"
	}
	a.setPhase(PhaseDownloading)
	dl := filepath.Join(a.cfg.StateDir, "downloads")
	pruneDownloads(dl, m)
	usr, _ := m.Payload(channels.PayloadUSR)
	// A delta against the running release saves most of the download; it
	// is used only if the running slot really holds its base.
	base, closeBase, delta := a.deltaBase(m, running)
	defer closeBase()
	files := map[string]string{}
	start := time.Now()
	names := []string{channels.PayloadUSR, channels.PayloadKernel, channels.PayloadInitrd}
	if delta != nil {
		names[0] = channels.PayloadUSRDelta
	}
	for _, name := range names {
		p, ok := m.Payload(name)
		if !ok {
			return fmt.Errorf("update: release %s has no %s payload", m.Version, name)
		}
		path, err := c.Download(ctx, p, dl)
		if err != nil {
			return fmt.Errorf("update: %s: %w", m.Version, err)
		}
		files[name] = path
	}
	timing["download"] = time.Since(start).Seconds()

	a.setPhase(PhaseWriting)
	if err := a.slots.Invalidate(target); err != nil {
		return fmt.Errorf("update: invalidate slot %s: %w", target, err)
	}
	t, err := a.slots.USRTarget(target)
	if err != nil {
		return err
	}
	var ws channels.WriteStats
	// Progress of the slot write, for pithctl update status (and tests
	// that must act in the middle of it).
	what := "usr -> slot " + target
	wstart := time.Now()
	wprog := func(done, total int64) {
		p := channels.Progress{Payload: what, Done: done, Total: total, Final: done == total}
		if s := time.Since(wstart).Seconds(); s > 0 {
			p.BytesPerSec = float64(done) / s
		}
		a.mu.Lock()
		a.status.Progress = &p
		a.mu.Unlock()
	}
	if delta != nil {
		ws, err = channels.ApplyDelta(ctx, files[channels.PayloadUSRDelta], *delta, base, t, wprog)
		if err != nil && ctx.Err() == nil {
			// The slot is invalid anyway; fetch the whole USR instead.
			a.logf("update: delta against %s failed (%v); downloading the full USR", a.cfg.Running, err)
			start := time.Now()
			path, derr := c.Download(ctx, usr, dl)
			if derr != nil {
				return fmt.Errorf("update: %s: %w", m.Version, derr)
			}
			timing["download"] += time.Since(start).Seconds()
			files[channels.PayloadUSR] = path
			delta = nil
		}
	}
	if delta == nil {
		wstart = time.Now()
		ws, err = channels.WritePayload(ctx, files[channels.PayloadUSR], usr, t, wprog)
	}
	if err != nil {
		return fmt.Errorf("update: write slot %s: %w", target, err)
	}
	timing["write"], timing["readback"] = ws.Write, ws.ReadBack
	if ws.Direct {
		timing["direct"] = 1
	}
	if delta != nil {
		timing["delta"] = 1
	}
	start = time.Now()
	for name, dst := range map[string]string{channels.PayloadKernel: a.slots.KernelPath(target), channels.PayloadInitrd: a.slots.InitrdPath(target)} {
		p, _ := m.Payload(name)
		if err := channels.InstallFile(files[name], p, dst); err != nil {
			return fmt.Errorf("update: install %s: %w", name, err)
		}
	}
	timing["esp"] = time.Since(start).Seconds()
	start = time.Now()
	if err := a.slots.SetVerity(target, m.USRVerityHash); err != nil {
		return fmt.Errorf("update: slot %s: %w", target, err)
	}
	timing["verity"] = time.Since(start).Seconds()
	if err := a.hook("written"); err != nil {
		return err
	}
	// The record first, then the trial: a cut in between boots the old
	// slot with a record saying the trial was never armed (AfterBoot arms
	// it again), never the new slot with no record (never marked good).
	a.mu.Lock()
	a.st.Pending = &Pending{Version: m.Version, Slot: target, From: a.cfg.Running, Applied: a.now().UTC()}
	how := ""
	if timing["delta"] == 1 {
		how = " (delta from " + a.cfg.Running + ")"
	}
	a.event(m.Version, "applied", fmt.Sprintf("slot %s; download%s %.1fs, write %.1fs, read-back %.1fs", target, how, timing["download"], timing["write"], timing["readback"]))
	a.status.Timing = timing
	err = a.setStage(StageWritten, "")
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if err := a.hook("pending-saved"); err != nil {
		return err
	}
	if err := a.arm(target); err != nil {
		return err
	}
	// The payloads are on the slot now; keep the disk free.
	for _, f := range files {
		os.Remove(f)
	}
	return nil
}

// deltaBase returns the running slot's USR as a delta base when the release
// has a usr-delta made against exactly that content.
func (a *Agent) deltaBase(m *channels.Manifest, running string) (io.ReaderAt, func(), *channels.Payload) {
	nop := func() {}
	d, ok := m.Payload(channels.PayloadUSRDelta)
	if !ok {
		return nil, nop, nil
	}
	src, err := a.slots.USRTarget(running)
	if err != nil {
		a.logf("update: no delta: running slot: %v", err)
		return nil, nop, nil
	}
	f, err := os.Open(src.Path)
	if err != nil {
		a.logf("update: no delta: %v", err)
		return nil, nop, nil
	}
	base := io.NewSectionReader(f, src.Offset, d.BaseSize)
	if err := channels.VerifyBase(base, d); err != nil {
		f.Close()
		a.logf("update: no delta: %v", err)
		return nil, nop, nil
	}
	return base, func() { f.Close() }, &d
}

// pruneDownloads removes files of other releases (a superseded release's
// partial download, say) so they do not pile up on ROOT.
func pruneDownloads(dir string, m *channels.Manifest) {
	keep := map[string]bool{}
	for _, p := range m.Payloads {
		keep[p.SHA256], keep[p.SHA256+".part"] = true, true
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !keep[e.Name()] {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// rebootPhase reboots for the pending update as the strategy says.
func (a *Agent) rebootPhase(ctx context.Context) error {
	action := a.cfg.Strategy.Decide(a.inCluster())
	if action == ActionLockReboot && a.kv == nil {
		return errors.New("update: reboot strategy etcd-lock needs the cluster's KV; use best-effort or reboot on a single machine")
	}
	if action == ActionNone {
		a.setPhase(PhaseReady)
		return nil
	}
	for {
		if wait := a.cfg.Window.Until(a.now()); wait > 0 {
			a.setPhase(PhaseWaitingWindow)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		if action == ActionLockReboot {
			// Recorded before it is taken: a cut right after taking it
			// must not leave a lock no boot ever releases (releasing one
			// not held is harmless).
			var err error
			a.mu.Lock()
			if !a.st.LockHeld {
				a.st.LockHeld = true
				err = a.save()
			}
			a.mu.Unlock()
			if err != nil {
				return err
			}
			sem := &Semaphore{KV: a.kv, Key: GroupSemaphoreKey(a.cfg.Group)}
			err = sem.Lock(ctx, a.cfg.MachineID)
			if err != nil && !errors.Is(err, ErrNoSlots) {
				// The KV may be between leaders or the node rejoining:
				// keep waiting for the lock rather than reboot without it.
				a.mu.Lock()
				a.status.LastError = strings.TrimSpace(err.Error())
				a.mu.Unlock()
				a.logf("update: reboot lock: %v", err)
			}
			if err != nil {
				a.setPhase(PhaseWaitingLock)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(a.cfg.LockRetry):
				}
				continue // the window may have closed meanwhile
			}
		}
		if err := a.hook("before-reboot"); err != nil {
			return err
		}
		a.setPhase(PhaseRebooting)
		a.mu.Lock()
		v := a.st.Pending.Version
		a.mu.Unlock()
		return a.reboot.Reboot(ctx, "update to "+v)
	}
}

// inCluster reports whether this node is part of a cluster (it runs the
// KV), which makes best-effort take the lock. A KV that is configured but
// momentarily without a leader still counts: rebooting without the lock
// then could take down more machines than the cluster allows.
func (a *Agent) inCluster() bool { return a.kv != nil }
