package firstboot

import (
	"log/slog"
	"testing"

	"github.com/pith-os/pith/cloudconfig/apply"
	"github.com/pith-os/pith/cloudconfig/apply/applytest"
)

// newStage is a stage on a temp root holding the host's account files, so
// shadow's real tools work on it.
func newStage(t *testing.T) (*apply.Stage, *applytest.Recorder, string) {
	t.Helper()
	root := applytest.NewRoot(t)
	rec := &applytest.Recorder{}
	return &apply.Stage{Applier: &apply.Applier{Root: root, Accounts: &apply.Shadow{Root: root}, Units: rec, Host: rec, Log: slog.New(slog.NewTextHandler(t.Output(), nil))}}, rec, root
}
