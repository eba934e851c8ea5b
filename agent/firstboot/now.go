package firstboot

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pith-os/pith/agent/datasource"
	"github.com/pith-os/pith/agent/units"
	"github.com/pith-os/pith/cloudconfig/apply"
)

// NowOptions say where `pithd firstboot --now` (run by pithctl userdata
// apply) looks for user-data and what it may touch.
type NowOptions struct {
	// Root is the system to configure ("/" on a node).
	Root string
	// FromFile, when set, is the user-data to apply instead of probing
	// the datasources.
	FromFile string
	// MetadataURL is the EC2/DigitalOcean metadata service; "" is the
	// link-local default.
	MetadataURL string
	// ConfigDrives, when not nil, are the devices or images to try as a
	// config-2 drive instead of the default ones.
	ConfigDrives []string
	// NoUnits: do not connect to systemd (tests; units in user-data then
	// fail, and pithd.service is not touched).
	NoUnits bool
	// NoRestart: leave pithd.service as it is afterwards.
	NoRestart bool
}

// now is the first-boot stage run by an operator on a running node:
// apply, then startAgent; close at the end.
type now struct {
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

// openNow connects to systemd (unless o.NoUnits) for a run of the stage.
func openNow(ctx context.Context, o NowOptions) (*now, error) {
	ap, closeUnits, err := newApplier(ctx, o.Root, o.NoUnits)
	if err != nil {
		return nil, err
	}
	ds := datasource.Config{Root: o.Root, FromFile: o.FromFile, MetadataURL: o.MetadataURL, ConfigDrives: o.ConfigDrives}
	if ds.MetadataURL == "" {
		ds.MetadataURL = datasource.DefaultMetadataURL
	}
	return &now{ds: ds, ap: ap, close: closeUnits}, nil
}

// apply fetches and applies the user-data in full, as on first boot.
func (n *now) apply(ctx context.Context, say func(l Level, format string, args ...any)) (*BootResult, error) {
	return Boot(ctx, &apply.Stage{Applier: n.ap}, BootOptions{Datasource: n.ds, Now: true, Say: say})
}

// startAgent starts pithd.service, or restarts it when res says its
// settings changed; it returns which it did ("start" or "restart"), or ""
// when there is nothing to do (no systemd, or pithd waits for user-data).
func (n *now) startAgent(ctx context.Context, res *BootResult) (string, error) {
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

// RunNow is `pithd firstboot --now`: the first-boot stage now, in full,
// each message and then every change it made written to w (warnings and
// errors prefixed so), then pithd.service started or restarted unless
// o.NoRestart. An error means the user-data was not applied.
func RunNow(ctx context.Context, o NowOptions, w io.Writer) error {
	n, err := openNow(ctx, o)
	if err != nil {
		return err
	}
	defer n.close()
	return n.run(ctx, o.NoRestart, w)
}

// run is RunNow on an opened stage.
func (n *now) run(ctx context.Context, noRestart bool, w io.Writer) error {
	res, err := n.apply(ctx, func(l Level, format string, args ...any) {
		prefix := ""
		switch l {
		case LevelWarning:
			prefix = "warning: "
		case LevelError:
			prefix = "error: "
		}
		fmt.Fprintf(w, prefix+format+"\n", args...)
	})
	if res != nil {
		if len(res.Changes) == 0 {
			fmt.Fprintln(w, "changed: nothing (the node already is as the user-data says)")
		} else {
			fmt.Fprintf(w, "changed (%d):\n", len(res.Changes))
			for _, c := range res.Changes {
				fmt.Fprintf(w, "  %s\n", c)
			}
		}
	}
	if err != nil {
		return errors.New("user-data was not applied (see above; pithctl userdata shows the report)")
	}
	if noRestart {
		return nil
	}
	how, err := n.startAgent(ctx, res)
	if err != nil || how == "" {
		return err
	}
	if how == "restart" {
		fmt.Fprintf(w, "%s: restarted (its settings changed; a KV that already has data keeps its cluster membership)\n", apply.AgentUnit)
	} else {
		fmt.Fprintf(w, "%s: started if it was not running (its settings are unchanged)\n", apply.AgentUnit)
	}
	return nil
}
