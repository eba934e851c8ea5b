package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/pith-os/pith/rebootlock"
)

// setLockMax makes the reboot semaphore of group allow max holders
// (pith.update.max_holders), as `locksmithctl set-max` did by hand on
// CoreOS. It retries until the KV takes the write (no leader yet at
// boot) or ctx ends. Every node configured so sets the same value; the
// last start wins if they differ.
func setLockMax(ctx context.Context, kv rebootlock.KV, group string, max int, retry time.Duration, log *slog.Logger) error {
	sem := &rebootlock.Semaphore{KV: kv, Key: rebootlock.GroupSemaphoreKey(group)}
	for {
		old, err := sem.SetMax(ctx, max)
		if err == nil {
			if old != max {
				log.Info("reboot lock: max holders set", "group", group, "max", max, "was", old)
			}
			return nil
		}
		log.Warn("reboot lock: setting max holders", "max", max, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
}
