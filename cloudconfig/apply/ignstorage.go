package apply

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/node"
)

// checkStorageApplied rejects an Ignition config whose storage.disks or
// storage.filesystems the initramfs did not apply (it reads QEMU's fw_cfg,
// a config drive, the OEM partition's config.ign and, on EC2, the
// metadata service; a config from a URL, or from EC2 when the service did
// not answer it, reaches only this stage, which does not partition):
// writing its files would put them
// where the missing filesystems should have been. raw is the decompressed
// user-data, hashed as the initramfs hashed it.
func checkStorageApplied(root, source string, raw []byte, ud *cloudconfig.UserData, rep *cloudconfig.Report) {
	if ud == nil || ud.Ignition == nil {
		return
	}
	// What the initramfs applies: a filesystem entry without a format only
	// names a device, and the init writes no marker for an empty plan (a
	// plan error is reported by ParseIgnition already).
	if plan, err := cloudconfig.IgnitionStoragePlan(ud.Ignition); err != nil || plan.Empty() {
		return
	}
	sum := sha256.Sum256(raw)
	done, err := os.ReadFile(filepath.Join(root, node.StorageDoneMarker))
	if err == nil && strings.TrimSpace(string(done)) == hex.EncodeToString(sum[:]) {
		return
	}
	rep.Errorf(cloudconfig.Pos{Line: 1, Column: 1}, "storage",
		"storage.disks/filesystems were not applied: %s (or after first boot); its files would land beside the missing filesystems", initramfsSources(source))
}
