package node

import (
	"path"
	"testing"
)

// The initramfs writes its markers relative to ROOT; pithd reads them
// under StateDir: both must name the same files.
func TestStorageMarkersUnderStateDir(t *testing.T) {
	for _, m := range []string{StoragePendingMarker, StorageStartedMarker, StorageDoneMarker, KargsRebootMarker} {
		if got := path.Dir("/" + m); got != StateDir {
			t.Errorf("%s is in %s, not StateDir %s", m, got, StateDir)
		}
	}
}
