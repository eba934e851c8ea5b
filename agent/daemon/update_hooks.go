package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/pith-os/pith/agent/update"
	"github.com/pith-os/pith/cloudconfig"
)

// readRebootHooks returns user-data's reboot hooks (pith.update.pre-reboot
// and post-reboot) from the settings `pithd firstboot` saved; none when
// there is no settings file.
func readRebootHooks(path string) (update.Hooks, error) {
	if path == "" {
		return update.Hooks{}, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return update.Hooks{}, nil
	}
	if err != nil {
		return update.Hooks{}, err
	}
	var s cloudconfig.Settings
	if err := json.Unmarshal(b, &s); err != nil {
		return update.Hooks{}, fmt.Errorf("%s: %v", path, err)
	}
	return update.Hooks{PreReboot: s.Update.PreReboot, PostReboot: s.Update.PostReboot}, nil
}
