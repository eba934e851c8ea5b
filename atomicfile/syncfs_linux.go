package atomicfile

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// SyncFS flushes the whole filesystem holding dir (syncfs(2)): for a step
// that wrote many files (or had tools write them) before a record saying
// it is done, one flush instead of an fsync per file.
func SyncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
