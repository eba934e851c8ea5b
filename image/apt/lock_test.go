package apt

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// TestLock: a second holder waits until the first unlocks (seen through a
// cancelled wait), then gets the lock.
func TestLock(t *testing.T) {
	l := Lists{Dir: filepath.Join(t.TempDir(), "lists")}
	unlock, err := l.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		u, err := l.Lock(ctx)
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
	u2, err := l.Lock(context.Background())
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	u2()
}
