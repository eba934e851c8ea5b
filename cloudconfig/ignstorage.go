package cloudconfig

import (
	"errors"

	vpath "github.com/coreos/vcontext/path"
	"github.com/pith-os/pith/initramfs/storage"
)

// ignitionStorageLimits reports what the initramfs cannot apply of
// storage.disks, filesystems, raid and luks (initramfs/storage applies
// them on first boot; pith validate and the init say the same).
func ignitionStorageLimits(cfg *IgnitionConfig, add func(vpath.ContextPath, string, ...any)) {
	_, err := storage.FromConfig(cfg)
	if err == nil {
		return
	}
	var joined interface{ Unwrap() []error }
	errs := []error{err}
	if errors.As(err, &joined) {
		errs = joined.Unwrap()
	}
	for _, e := range errs {
		var p storage.Problem
		if errors.As(e, &p) {
			add(vpath.New("json", p.Path...), "%s", p.Msg)
		} else {
			add(vpath.New("json", "storage"), "%v", e)
		}
	}
}
