package update

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"
)

// AfterBoot settles an update that a reboot was for, from whatever state a
// power cut left. Booted on the trial slot: wait until healthy (at most
// VerifyTimeout), mark it good, release the reboot lock; not healthy in
// time: go back to the previous slot. Back on the old slot after an armed
// trial: the trial failed; record a rollback and never try that version
// again. Back on the old slot before the trial was armed (or while it was
// being marked good): arm it again. Call it once at start, before Run.
func (a *Agent) AfterBoot(ctx context.Context) error {
	a.mu.Lock()
	var p node.UpdatePending
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
		p.Stage = node.StageArmed
	}
	running, err := a.slots.Running()
	if err != nil {
		return err
	}
	sameBoot := p.Boot != "" && p.Boot == a.cfg.BootID
	switch {
	case p.Stage == node.StageUnhealthy && (running == p.Slot || sameBoot):
		// The way back was decided but the reboot did not happen.
		return a.rollBack(ctx, p.Slot, p.Reason)
	case running == p.Slot:
		return a.verify(ctx, p)
	case sameBoot && p.Stage == node.StageWritten:
		// pithd restarted while arming the trial: arm it (Run reboots).
		return a.arm(p.Slot)
	case sameBoot:
		return nil // still waiting for its reboot: Run takes it from here
	case p.Stage == node.StageWritten || p.Stage == node.StageHealthy:
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
	if p.Stage == node.StageUnhealthy {
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
	if err := a.hook("rollback-recorded"); err != nil {
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
	a.status.Phase = node.PhaseReady
	a.st.Pending.TrialStart = time.Time{} // a trial armed again starts afresh
	return a.setStage(node.StageArmed, "")
}

// verify waits until the node is healthy on the trial slot, at most
// VerifyTimeout, then marks the slot good; not healthy by then, it rolls
// back.
func (a *Agent) verify(ctx context.Context, p node.UpdatePending) error {
	a.setPhase(node.PhaseVerifying)
	if p.Stage != node.StageHealthy {
		left, err := a.verifyLeft()
		if err != nil {
			return err
		}
		vctx, cancel := context.WithTimeout(ctx, left)
		err = a.Healthy(vctx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("update: node not healthy on %s, slot %s stays on trial: %w", p.Version, p.Slot, err)
		}
		if err != nil {
			reason := fmt.Sprintf("was not healthy within %s: %s", a.cfg.VerifyTimeout, healthReason(err))
			a.mu.Lock()
			// Said (and reported) by the node itself, before it goes back.
			a.event(p.Version, "unhealthy", "slot "+p.Slot+" "+reason)
			err = a.setStage(node.StageUnhealthy, reason)
			a.mu.Unlock()
			if err != nil {
				return err
			}
			return a.rollBack(ctx, p.Slot, reason)
		}
		a.mu.Lock()
		err = a.setStage(node.StageHealthy, "")
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
	a.st.Good = &goodSlot{Slot: p.Slot, Version: p.Version}
	lockHeld := a.st.LockHeld
	err := a.save()
	a.mu.Unlock()
	a.setPhase(node.PhaseIdle)
	if err != nil {
		return err
	}
	if lockHeld {
		return a.releaseLock(ctx)
	}
	return nil
}

// verifyLeft is how much of VerifyTimeout is left of the trial, counted
// from its first start (recorded durably now if this is it). A clock set
// back since cannot make it longer than VerifyTimeout.
func (a *Agent) verifyLeft() (time.Duration, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if a.st.Pending.TrialStart.IsZero() {
		a.st.Pending.TrialStart = now.UTC()
		if err := a.save(); err != nil {
			return 0, err
		}
	}
	left := a.st.Pending.TrialStart.Add(a.cfg.VerifyTimeout).Sub(now)
	return max(min(left, a.cfg.VerifyTimeout), 0), nil
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
	a.log.Warn("update: rolling back", "slot", slot, "reason", reason)
	if err := a.slots.Invalidate(slot); err != nil {
		return fmt.Errorf("update: invalidate slot %s to roll back: %w", slot, err)
	}
	if err := a.hook("rollback-invalidated"); err != nil {
		return err
	}
	a.mu.Lock()
	a.status.Phase, a.status.LastError = node.PhaseRebooting, "rolling back: slot "+slot+" "+reason
	a.mu.Unlock()
	return a.reboot.Reboot(ctx, "rollback: slot "+slot+" "+reason)
}

// Pauses between attempts to release the reboot lock: a node that rolled
// back releases it right after boot, before its KV has a leader (no health
// wait comes first), so the first attempts fail; it retries soon and often
// rather than leave the cluster waiting for a lock nobody uses.
const (
	releaseFirstPause = 250 * time.Millisecond
	releaseMaxPause   = 4 * time.Second
	releaseAttempt    = 10 * time.Second // one attempt hung on a dead member
)

// releaseLock gives this machine's slot of the reboot semaphore back,
// retrying (pauses from releaseFirstPause doubling up to releaseMaxPause,
// never longer than LockRetry) until the KV takes it or ctx ends. LockHeld
// stays saved until then, so a cut before it is done releases on the next
// boot; releasing again is harmless (Unlock removes only this machine's
// id: a slot another machine took since is never touched).
func (a *Agent) releaseLock(ctx context.Context) error {
	if a.kv != nil {
		sem := &rebootlock.Semaphore{KV: a.kv, Key: rebootlock.GroupSemaphoreKey(a.cfg.Group)}
		pause := min(releaseFirstPause, a.cfg.LockRetry)
		for attempt := 1; ; attempt++ {
			actx, cancel := context.WithTimeout(ctx, releaseAttempt)
			err := sem.Unlock(actx, a.cfg.MachineID)
			cancel()
			if err == nil || errors.Is(err, rebootlock.ErrNotHolder) {
				if attempt > 1 {
					a.log.Info("update: reboot lock released", "attempts", attempt)
				}
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("update: release reboot lock: %w", err)
			}
			if attempt == 1 {
				a.log.Warn("update: releasing the reboot lock, retrying", "err", err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("update: release reboot lock: %w", err)
			case <-a.after(pause):
			}
			pause = min(pause*2, releaseMaxPause, a.cfg.LockRetry)
		}
	}
	if err := a.hook("lock-released"); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.LockHeld = false
	return a.save()
}
