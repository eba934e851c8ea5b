package update

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"
)

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
			a.status.Phase, a.status.LastError = node.PhaseError, strings.TrimSpace(err.Error())
			a.mu.Unlock()
			a.log.Warn("update: check failed", "err", err)
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
	case pending.Stage == node.StageUnhealthy:
		return nil // rolling back: the reboot is under way
	case pending.Stage == node.StageWritten:
		// Arming failed last time: the slot is written, arm it now.
		if err := a.arm(pending.Slot); err != nil {
			return err
		}
	}
	return a.rebootPhase(ctx)
}

// rebootPhase reboots for the pending update as the strategy says.
func (a *Agent) rebootPhase(ctx context.Context) error {
	action := a.cfg.Strategy.Decide(a.inCluster())
	if action == ActionLockReboot && a.kv == nil {
		return errors.New("update: reboot strategy etcd-lock needs the cluster's KV; use best-effort or reboot on a single machine")
	}
	if action == ActionNone {
		a.setPhase(node.PhaseReady)
		return nil
	}
	for {
		if wait := a.cfg.Window.Until(a.now()); wait > 0 {
			a.setPhase(node.PhaseWaitingWindow)
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
			sem := &rebootlock.Semaphore{KV: a.kv, Key: rebootlock.GroupSemaphoreKey(a.cfg.Group)}
			err = sem.Lock(ctx, a.cfg.MachineID)
			if err != nil && !errors.Is(err, rebootlock.ErrNoSlots) {
				// The KV may be between leaders or the node rejoining:
				// keep waiting for the lock rather than reboot without it.
				a.mu.Lock()
				a.status.LastError = strings.TrimSpace(err.Error())
				a.mu.Unlock()
				a.log.Warn("update: reboot lock", "err", err)
			}
			if err != nil {
				a.setPhase(node.PhaseWaitingLock)
				if err := a.waitLockChange(ctx, sem, err); err != nil {
					return err
				}
				continue // the window may have closed meanwhile
			}
		}
		if err := a.hook("before-reboot"); err != nil {
			return err
		}
		a.setPhase(node.PhaseRebooting)
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

// waitLockChange waits before the next attempt at the reboot lock: until
// the semaphore changes (a holder gave its slot back) when Lock saw it full
// and the KV can watch, and at most LockRetry (a watch that fails, a KV
// error, or a window that may have closed, are retried on that timer).
// Only ctx's end is an error.
func (a *Agent) waitLockChange(ctx context.Context, sem *rebootlock.Semaphore, lockErr error) error {
	wctx, cancel := context.WithTimeout(ctx, a.cfg.LockRetry)
	defer cancel()
	var full *rebootlock.NoSlotsError
	if errors.As(lockErr, &full) {
		if err := sem.WaitChange(wctx, full.Index); err == nil {
			return nil
		} else if wctx.Err() == nil && !errors.Is(err, rebootlock.ErrCannotWatch) {
			a.log.Debug("update: watching the reboot lock", "err", err)
		}
	}
	<-wctx.Done()
	return ctx.Err()
}
