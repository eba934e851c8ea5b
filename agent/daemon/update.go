package daemon

// The updater: follows a release channel, writes the inactive USR slot,
// reboots by locksmith's strategy, marks the slot good once the node is
// healthy, and reports rollbacks. Off unless an update server is set
// (--update-server, or SERVER= in /etc/coreos/update.conf as
// coreos-cloudinit writes it). Also serves the reboot lock at
// /pith/v1/locks whenever the KV runs.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/pith-os/pith/agent/update"
	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/slot"
	"github.com/pith-os/pith/rebootlock"
)

func (d *Daemon) updateMachineID() (string, error) {
	if id := d.cfg.Schedule.MachineID; id != "" {
		return id, nil
	}
	b, err := os.ReadFile("/etc/machine-id")
	if err != nil || strings.TrimSpace(string(b)) == "" {
		return "", fmt.Errorf("update: no machine ID in /etc/machine-id (give --machine-id)")
	}
	return strings.TrimSpace(string(b)), nil
}

// buildUpdater serves the reboot lock when the KV runs and builds the
// update agent when an update server is set. A misconfigured agent is
// logged, not fatal: the node's other duties (KV, units) matter more
// than its updates.
func (d *Daemon) buildUpdater() error {
	var kv rebootlock.KV
	if d.node != nil && len(d.cfg.KV.AdvertiseClientURLs) > 0 {
		ekv, err := lockKV(&d.cfg.KV)
		if err != nil {
			d.log.Warn("reboot lock unavailable", "err", err)
		} else {
			kv = ekv
			d.lockKV = ekv
			update.RegisterLockHTTP(d.mux, ekv)
		}
	}
	if d.cfg.Update.Server == "" {
		return nil
	}
	if err := d.newUpdateAgent(kv); err != nil {
		d.log.Error("update agent disabled", "err", err)
	}
	return nil
}

func (d *Daemon) newUpdateAgent(kv rebootlock.KV) error {
	f := &d.cfg.Update
	strategy, err := update.ParseStrategy(f.Strategy)
	if err != nil {
		return err
	}
	window, err := update.ParseWindow(f.WindowStart, f.WindowLength)
	if err != nil {
		return err
	}
	keys, err := channels.LoadKeyring(f.KeyDirs...)
	if err != nil {
		return err
	}
	for _, k := range f.ExtraKeys {
		keys.Add(k)
	}
	if keys.Len() == 0 {
		// The agent still runs, so pithctl update status shows why
		// nothing is updated; every check refuses before any download.
		d.log.Warn("update: no trusted release key; every update will be refused", "dirs", strings.Join(f.KeyDirs, ", "))
	}
	id, err := d.updateMachineID()
	if err != nil {
		return err
	}
	disk := f.Disk
	if disk == "" {
		if disk, err = slot.BootDisk(f.Cmdline, "", ""); err != nil {
			return err
		}
	}
	running := f.Running
	if running == "" {
		running = imageVersion(f.OSRelease)
	}
	stateDir := f.StateDir
	if stateDir == "" {
		stateDir = filepath.Join(d.cfg.KV.DataDir, "update")
	}
	argv := strings.Fields(f.RebootCommand)
	if len(argv) == 0 {
		return errors.New("--update-reboot-command is empty")
	}
	a, err := update.New(update.Config{
		Server: f.Server, Channel: f.Channel, Strategy: strategy, Window: window, Group: f.Group,
		MachineID: id, Running: running, Platform: "linux/" + runtime.GOARCH, Keys: keys,
		StateDir: stateDir, Interval: f.Interval, LockRetry: f.LockRetry, VerifyTimeout: f.VerifyTimeout,
	}, &update.DiskSlots{Disk: disk, ESP: f.ESP, Cmdline: f.Cmdline}, &update.CommandRebooter{Argv: argv}, kv, d.log)
	if err != nil {
		return err
	}
	// Healthy once the KV answers a quorum read (this node rejoined the
	// cluster, a leader exists) and the units the scheduler launched here
	// run: only then is the slot marked good and the reboot lock released.
	var units update.ScheduledUnits
	if d.sched != nil {
		units = machineUnits{d.sched.svc}
	}
	a.Healthy = update.HealthCheck(kv, units, 5*time.Second, f.UnitSettle, a.SetWaiting)
	// Each update event goes to the channel server (best-effort), and
	// the channel's phased rollout decides when this machine takes a
	// release; user-data's reboot hooks run around the reboot.
	rep, err := update.NewReporter(a, "")
	if err != nil {
		return err
	}
	hooks, err := readRebootHooks(d.cfg.Update.Settings)
	if err != nil {
		return err
	}
	update.SetHooks(a, hooks, rep)
	d.reports = rep
	a.RegisterHTTP(d.mux)
	d.updater = a
	d.log.Info("update agent configured", "server", f.Server, "channel", f.Channel, "strategy", strategy, "window", window.String(), "disk", disk, "running", running)
	return nil
}

// startUpdater settles the last update (marks the slot good once healthy,
// or reports the rollback), then follows the channel.
func (d *Daemon) startUpdater(ctx context.Context) {
	if u := d.cfg.Update; u.LockMax > 0 && d.lockKV != nil {
		go setLockMax(ctx, d.lockKV, u.Group, u.LockMax, u.LockRetry, d.log)
	}
	a := d.updater
	if a == nil {
		return
	}
	if d.reports != nil {
		go d.reports.Run(ctx)
	}
	go func() {
		for {
			err := a.AfterBoot(ctx)
			if err == nil {
				break
			}
			d.log.Warn("update: settling the last update", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(30 * time.Second):
			}
		}
		_ = a.Run(ctx)
	}()
}
