package rootfs

import (
	"context"
	"errors"
	"testing"
)

// TestLockDir: a second holder waits until the first unlocks (seen through
// a cancelled wait), then gets the lock.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		u, err := lockDir(ctx, dir)
		if err == nil {
			u()
		}
		got <- err
	}()
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("second lock while the first is held: %v, want to wait until cancelled", err)
	}
	unlock()
	u2, err := lockDir(context.Background(), dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	u2()
}
