package apt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lockFile is the lock on a lists directory.
const lockFile = ".pith-lock"

// Lock takes the lists directory's lock (an exclusive flock on
// Dir/.pith-lock, released by the returned func or when the process dies),
// waiting while another process holds it: builds and pith outdated sharing
// a cache take turns to refresh and read the indexes, as apt-get runs here
// without its own locking (Debug::NoLocking) and two updates of one lists
// directory would overwrite each other's downloads.
func (l Lists) Lock(ctx context.Context) (unlock func(), err error) {
	return lockDir(ctx, l.Dir)
}

func lockDir(ctx context.Context, dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			f.Close()
			return nil, fmt.Errorf("lock %s: %v", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("interrupted waiting for %s: %w", p, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
