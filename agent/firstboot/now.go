package firstboot

import (
	"context"
	"fmt"

	"github.com/pith-os/pith/agent/datasource"
	"github.com/pith-os/pith/agent/units"
	"github.com/pith-os/pith/cloudconfig/apply"
)

// NowOptions say where `pithctl userdata apply` looks for user-data and
// what it may touch.
type NowOptions struct {
	// Root is the system to configure ("/" on a node).
	Root string
	// FromFile, when set, is the user-data to apply instead of probing
	// the datasources.
	FromFile string
	// MetadataURL is the EC2/DigitalOcean metadata service; "" is the
	// link-local default.
	MetadataURL string
	// NoUnits: do not connect to systemd (tests; units in user-data then
	// fail, and pithd.service is not touched).
	NoUnits bool
}

// Now is the first-boot stage run by an operator on a running node
// (pithctl userdata apply): Apply, then StartAgent; Close at the end.
type Now struct {
	ds    datasource.Config
	ap    *apply.Applier
	close func()
}

// newApplier is the applier of the system at root: the host's shadow
// tools, and on "/" its hostname; systemd (agent/units) unless noUnits.
// Close the returned func at the end.
func newApplier(ctx context.Context, root string, noUnits bool) (*apply.Applier, func(), error) {
	ap := &apply.Applier{Root: root, Accounts: &apply.Shadow{Root: root}}
	if root == "/" {
		ap.Host = apply.KernelHost{}
	}
	if noUnits {
		return ap, func() {}, nil
	}
	sd, err := units.NewSystemd(ctx, "")
	if err != nil {
		return ap, func() {}, err
	}
	ap.Units = sd
	return ap, func() { sd.Close() }, nil
}

// OpenNow connects to systemd (unless o.NoUnits) for a run of the stage.
func OpenNow(ctx context.Context, o NowOptions) (*Now, error) {
	ap, closeUnits, err := newApplier(ctx, o.Root, o.NoUnits)
	if err != nil {
		return nil, err
	}
	ds := datasource.Config{Root: o.Root, FromFile: o.FromFile, MetadataURL: o.MetadataURL}
	if ds.MetadataURL == "" {
		ds.MetadataURL = datasource.DefaultMetadataURL
	}
	return &Now{ds: ds, ap: ap, close: closeUnits}, nil
}

// Close ends the systemd connection.
func (n *Now) Close() { n.close() }

// Apply fetches and applies the user-data in full, as on first boot.
func (n *Now) Apply(ctx context.Context, say func(l Level, format string, args ...any)) (*BootResult, error) {
	return Boot(ctx, &apply.Stage{Applier: n.ap}, BootOptions{Datasource: n.ds, Now: true, Say: say})
}

// StartAgent starts pithd.service, or restarts it when res says its
// settings changed; it returns which it did ("start" or "restart"), or ""
// when there is nothing to do (no systemd, or pithd waits for user-data).
func (n *Now) StartAgent(ctx context.Context, res *BootResult) (string, error) {
	if n.ap.Units == nil || res == nil || res.Waiting != "" {
		return "", nil
	}
	how := "start"
	if res.AgentChanged {
		how = "restart"
	}
	if err := n.ap.Units.Run(ctx, apply.AgentUnit, how); err != nil {
		return "", fmt.Errorf("%s %s: %w", how, apply.AgentUnit, err)
	}
	return how, nil
}
