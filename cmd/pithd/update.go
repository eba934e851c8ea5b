package main

// The update subsystem: follows a release channel, writes the inactive USR
// slot, reboots by locksmith's strategy, marks the slot good once the node
// is healthy, and reports rollbacks. Off unless an update server is set
// (--update-server, or SERVER= in /etc/coreos/update.conf as
// coreos-cloudinit writes it). Also serves the reboot lock at
// /pith/v1/locks whenever the KV runs.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/agent/schedule/fleetapi"
	"github.com/pith-os/pith/agent/update"
	"github.com/pith-os/pith/channels"
)

var updFlags struct {
	server, channel, strategy      string
	windowStart, windowLength      string
	group, disk, esp, stateDir     string
	running, rebootCmd, updateConf string
	cmdline, settings, osRelease   string
	keys                           []string
	interval, lockRetry            time.Duration
	fs                             *pflag.FlagSet
}

var upd struct {
	agent *update.Agent
	kv    update.KV
}

func init() {
	registerSubsystem(subsystem{
		Name:  "update",
		Order: 50,
		Flags: func(fs *pflag.FlagSet) {
			f := &updFlags
			f.fs = fs
			fs.StringVar(&f.server, "update-server", "", "release channel server URL (coreos.update.server); empty disables updates")
			fs.StringVar(&f.channel, "update-channel", "stable", "release channel to follow (coreos.update.group)")
			fs.StringVar(&f.strategy, "reboot-strategy", "best-effort", "after an update: reboot, etcd-lock, best-effort or off (coreos.update.reboot-strategy)")
			fs.StringVar(&f.windowStart, "reboot-window-start", "", `reboot window start, e.g. "Thu 04:00" or "04:00" (coreos.locksmith.window-start)`)
			fs.StringVar(&f.windowLength, "reboot-window-length", "", `reboot window length, e.g. "1h" (coreos.locksmith.window-length)`)
			fs.StringVar(&f.group, "reboot-group", "", "reboot lock group (coreos.locksmith.group)")
			fs.DurationVar(&f.interval, "update-interval", time.Hour, "time between channel checks (plus up to 10% jitter)")
			fs.DurationVar(&f.lockRetry, "reboot-lock-retry", 30*time.Second, "time between attempts to take a busy reboot lock")
			fs.StringSliceVar(&f.keys, "update-keys", []string{channels.ImageKeyDir, channels.OEMKeyDir}, "directories of trusted release keys (*.pub): the image's (pith build --release-key) and the OEM partition's; user-data's pith.update.public_keys add to them")
			fs.StringVar(&f.disk, "update-disk", "", "boot disk holding USR-A/USR-B (default: the disk of pith.usr= on the kernel line)")
			fs.StringVar(&f.esp, "update-esp", "/boot", "mount point of the EFI system partition (grubenv, pith/vmlinuz-*)")
			fs.StringVar(&f.stateDir, "update-state-dir", "", "downloads and update state (default DATA_DIR/update)")
			fs.StringVar(&f.running, "update-running-version", "", "version of the running release (default: pithd's own)")
			fs.StringVar(&f.rebootCmd, "update-reboot-command", "systemctl reboot", "command that reboots the machine (a hook in simulations)")
			fs.StringVar(&f.cmdline, "update-cmdline", "/proc/cmdline", "kernel command line to read pith.slot= and pith.usr= from (a file in simulations)")
			fs.StringVar(&f.settings, "update-settings", "/var/lib/pith/settings.json", "user-data's coreos.update/coreos.locksmith/pith.update as pithd firstboot saved them (empty: none)")
			fs.StringVar(&f.osRelease, "update-os-release", "/usr/lib/os-release", "os-release whose VERSION is the running release (when --update-running-version is not given)")
			fs.StringVar(&f.updateConf, "update-conf", "/etc/coreos/update.conf", "update_engine-style GROUP=/SERVER=/REBOOT_STRATEGY= defaults")
		},
		Setup: setupUpdate,
		Start: startUpdate,
	})
}

// readUpdateConf applies update.conf and LOCKSMITHD_* variables to flags
// not given on the command line.
func readUpdateConf(fs *pflag.FlagSet, path string) error {
	set := func(flag, val string) error {
		if f := fs.Lookup(flag); f != nil && !f.Changed && val != "" {
			return fs.Set(flag, val)
		}
		return nil
	}
	if f, err := os.Open(path); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
			if !ok || strings.HasPrefix(k, "#") {
				continue
			}
			v = strings.Trim(v, `"'`)
			var err error
			switch k {
			case "SERVER":
				err = set("update-server", v)
			case "GROUP":
				err = set("update-channel", v)
			case "REBOOT_STRATEGY":
				err = set("reboot-strategy", v)
			case "LOCKSMITHD_REBOOT_WINDOW_START":
				err = set("reboot-window-start", v)
			case "LOCKSMITHD_REBOOT_WINDOW_LENGTH":
				err = set("reboot-window-length", v)
			}
			if err != nil {
				return fmt.Errorf("%s: %s: %w", path, k, err)
			}
		}
	}
	for env, flag := range map[string]string{
		"LOCKSMITHD_REBOOT_WINDOW_START":  "reboot-window-start",
		"LOCKSMITHD_REBOOT_WINDOW_LENGTH": "reboot-window-length",
		"LOCKSMITHD_GROUP":                "reboot-group",
		"REBOOT_STRATEGY":                 "reboot-strategy",
	} {
		if err := set(flag, os.Getenv(env)); err != nil {
			return fmt.Errorf("%s: %w", env, err)
		}
	}
	return nil
}

func updateMachineID() (string, error) {
	if f := runCmd.Flags().Lookup("machine-id"); f != nil && f.Value.String() != "" {
		return f.Value.String(), nil
	}
	b, err := os.ReadFile("/etc/machine-id")
	if err != nil || strings.TrimSpace(string(b)) == "" {
		return "", fmt.Errorf("update: no machine ID in /etc/machine-id (give --machine-id)")
	}
	return strings.TrimSpace(string(b)), nil
}

func setupUpdate(env *runEnv) error {
	f := &updFlags
	if env.Cluster != nil {
		urls, _ := runCmd.Flags().GetStringSlice("advertise-client-urls")
		if len(urls) > 0 {
			kv, err := update.NewEtcdKV(urls)
			if err != nil {
				return err
			}
			upd.kv = kv
			update.RegisterLockHTTP(env.Mux, kv)
		}
	}
	if f.fs != nil {
		// user-data first: it is the operator's word for this boot;
		// update.conf fills what it leaves unset.
		if err := readUpdateSettings(f.fs, f.settings); err != nil {
			return err
		}
		if err := readUpdateConf(f.fs, f.updateConf); err != nil {
			return err
		}
	}
	if f.server == "" {
		return nil
	}
	if err := newUpdateAgent(env); err != nil {
		// The node's other duties (KV, units) matter more than its
		// updates: run without the agent and say why, loudly.
		env.Log.Error("update agent disabled", "err", err)
	}
	return nil
}

func newUpdateAgent(env *runEnv) error {
	f := &updFlags
	strategy, err := update.ParseStrategy(f.strategy)
	if err != nil {
		return err
	}
	window, err := update.ParseWindow(f.windowStart, f.windowLength)
	if err != nil {
		return err
	}
	keys, err := channels.LoadKeyring(f.keys...)
	if err != nil {
		return err
	}
	for _, k := range updExtraKeys {
		keys.Add(k)
	}
	if keys.Len() == 0 {
		// The agent still runs, so pithctl update status shows why
		// nothing is updated; every check refuses before any download.
		env.Log.Warn("update: no trusted release key; every update will be refused", "dirs", strings.Join(f.keys, ", "))
	}
	id, err := updateMachineID()
	if err != nil {
		return err
	}
	disk := f.disk
	if disk == "" {
		if disk, err = update.BootDisk(f.cmdline, "", ""); err != nil {
			return err
		}
	}
	running := f.running
	if running == "" {
		running = imageVersion(f.osRelease)
	}
	stateDir := f.stateDir
	if stateDir == "" {
		stateDir = filepath.Join(env.DataDir, "update")
	}
	argv := strings.Fields(f.rebootCmd)
	if len(argv) == 0 {
		return errors.New("--update-reboot-command is empty")
	}
	logf := func(format string, a ...any) { env.Log.Info(fmt.Sprintf(format, a...)) }
	a, err := update.New(update.Config{
		Server: f.server, Channel: f.channel, Strategy: strategy, Window: window, Group: f.group,
		MachineID: id, Running: running, Platform: "linux/" + runtime.GOARCH, Keys: keys,
		StateDir: stateDir, Interval: f.interval, LockRetry: f.lockRetry,
	}, &update.DiskSlots{Disk: disk, ESP: f.esp, Cmdline: f.cmdline}, &update.CommandRebooter{Argv: argv}, upd.kv, logf)
	if err != nil {
		return err
	}
	// Healthy once the KV answers a quorum read (this node rejoined the
	// cluster, a leader exists) and the units the scheduler launched here
	// run: only then is the slot marked good and the reboot lock released.
	var units update.ScheduledUnits
	if sched.svc != nil {
		urls, _ := runCmd.Flags().GetStringSlice("advertise-client-urls")
		if len(urls) > 0 {
			c, err := fleetapi.NewClient(urls[0])
			if err != nil {
				return err
			}
			units = &fleetUnits{c: c, machine: id}
		}
	}
	a.Healthy = update.HealthCheck(upd.kv, units, 5*time.Second, a.SetWaiting)
	a.RegisterHTTP(env.Mux)
	upd.agent = a
	env.Log.Info("update agent configured", "server", f.server, "channel", f.channel, "strategy", strategy, "window", window.String(), "disk", disk, "running", running)
	return nil
}

func startUpdate(ctx context.Context, env *runEnv) error {
	a := upd.agent
	if a == nil {
		return nil
	}
	go func() {
		for {
			err := a.AfterBoot(ctx)
			if err == nil {
				break
			}
			env.Log.Warn("update: settling the last update", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(30 * time.Second):
			}
		}
		_ = a.Run(ctx)
	}()
	return nil
}

func goarch() string { return runtime.GOARCH }

// fleetUnits reads this machine's scheduled units through the fleet API
// (the leader's view: assignments and the reports of this machine's
// scheduler agent).
type fleetUnits struct {
	c       *fleetapi.Client
	machine string
}

func (f *fleetUnits) MachineUnits(ctx context.Context) ([]update.UnitState, error) {
	us, err := f.c.Units(ctx)
	if err != nil {
		return nil, err
	}
	states, err := f.c.UnitStates(ctx, nil, []string{f.machine})
	if err != nil {
		return nil, err
	}
	byName := map[string]*fleetapi.UnitState{}
	for _, s := range states {
		byName[s.Name] = s
	}
	var out []update.UnitState
	for _, u := range us {
		// Assigned here, or a global unit this machine reports on.
		if u.MachineID != f.machine && byName[u.Name] == nil {
			continue
		}
		st := update.UnitState{Name: u.Name, Desired: u.DesiredState}
		if s := byName[u.Name]; s != nil {
			st.Active, st.Sub = s.SystemdActiveState, s.SystemdSubState
		}
		out = append(out, st)
	}
	return out, nil
}
