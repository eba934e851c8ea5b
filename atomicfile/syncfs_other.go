//go:build !linux

package atomicfile

import (
	"os"
	"syscall"
)

// SyncFS flushes every filesystem (no syncfs(2) here); dir must exist.
func SyncFS(dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	syscall.Sync()
	return nil
}
