package daemon

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/agent/update"
	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/node"
)

// AddFlags adds `pithd run`'s flags to fs, bound to c, with their
// defaults. Every flag is a row of node's settings table (TestFlagsMatchTable).
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	f := &c.KV
	fs.BoolVar(&f.Enabled, "kv", true, "run the KV store (etcd v2 API) and the cluster's raft")
	fs.StringVar(&f.Name, "name", "default", "human-readable name for this member")
	fs.StringVar(&f.NewMemberName, "new-member-name", "", "name a member without KV state in --data-dir takes instead of --name; a member with state keeps the name it has (the first-boot stage's hostname default)")
	fs.StringVar(&f.DataDir, "data-dir", "", "path to the data directory (default ${name}.etcd)")
	fs.StringSliceVar(&f.ListenClientURLs, "listen-client-urls", []string{"http://127.0.0.1:2379"}, "URLs to listen on for client traffic (without a cluster CA, loopback only unless told otherwise)")
	fs.StringSliceVar(&f.AdvertiseClientURLs, "advertise-client-urls", []string{"http://localhost:2379"}, "client URLs to advertise to the rest of the cluster")
	fs.StringSliceVar(&f.ListenPeerURLs, "listen-peer-urls", []string{"http://127.0.0.1:2380"}, "URL to listen on for peer traffic (raft and forwarded writes)")
	fs.StringSliceVar(&f.InitialAdvertisePeerURLs, "initial-advertise-peer-urls", []string{"http://localhost:2380"}, "this member's peer URLs to advertise to the rest of the cluster")
	fs.StringVar(&f.InitialCluster, "initial-cluster", "", "initial cluster configuration for bootstrapping: name=peerURL,... (default ${name}=${initial-advertise-peer-urls})")
	fs.StringVar(&f.InitialClusterState, "initial-cluster-state", "new", `"new" to found a cluster, "existing" to join one (after pithctl member add)`)
	fs.StringVar(&f.InitialClusterToken, "initial-cluster-token", "etcd-cluster", "initial cluster token, unique per cluster")
	fs.StringVar(&f.Discovery, "discovery", "", "discovery URL used to bootstrap the cluster")
	fs.IntVar(&f.HeartbeatMS, "heartbeat-interval", 100, "time (in milliseconds) of a heartbeat interval")
	fs.IntVar(&f.ElectionMS, "election-timeout", 1000, "time (in milliseconds) for an election to timeout")
	fs.Uint64Var(&f.SnapshotCount, "snapshot-count", 10000, "number of committed entries between snapshots")
	fs.DurationVar(&f.SnapshotInterval, "snapshot-interval", 10*time.Second, "how often to check whether --snapshot-count entries accumulated")
	fs.IntVar(&f.MaxVoters, "max-voters", 5, "raft voters at most; further members join as non-voters")
	fs.IntVar(&f.MaxWatchers, "max-watchers", 10000, "concurrent watchers this member serves at most")
	fs.Int64Var(&f.MaxRequestBytes, "max-request-bytes", 2<<20, "largest request body accepted")
	fs.IntVar(&f.MaxValueBytes, "max-value-bytes", 1<<20, "largest value accepted")
	fs.BoolVar(&f.EnablePprof, "enable-pprof", false, "serve /debug/pprof/ on 127.0.0.1 only")
	fs.StringVar(&f.UnixSocket, "unix-socket", "", "unix socket (mode 0600) on which root reaches every route without a certificate (the image uses /run/pith/pithd.sock)")
	fs.StringVar(&f.ClientTLS.CertFile, "cert-file", "", "path to the client server TLS cert file")
	fs.StringVar(&f.ClientTLS.KeyFile, "key-file", "", "path to the client server TLS key file")
	fs.StringVar(&f.ClientTLS.TrustedCAFile, "trusted-ca-file", "", "path to the client server TLS trusted CA file")
	fs.BoolVar(&f.ClientTLS.ClientCertAuth, "client-cert-auth", false, "require client certificates signed by --trusted-ca-file")
	fs.StringVar(&f.PeerTLS.CertFile, "peer-cert-file", "", "path to the peer server TLS cert file")
	fs.StringVar(&f.PeerTLS.KeyFile, "peer-key-file", "", "path to the peer server TLS key file")
	fs.StringVar(&f.PeerTLS.TrustedCAFile, "peer-trusted-ca-file", "", "path to the peer server TLS trusted CA file")
	fs.BoolVar(&f.PeerTLS.ClientCertAuth, "peer-client-cert-auth", false, "require peer certificates signed by --peer-trusted-ca-file")

	s := &c.Schedule
	fs.BoolVar(&s.Enabled, "schedule", true, "run the fleet-compatible unit scheduler (needs --kv)")
	fs.StringVar(&s.Backend, "unit-backend", "auto", "how units run here: systemd, sim (simulated, for tests on hosts without systemd), none, or auto (systemd when present, else none)")
	fs.StringVar(&s.SimDir, "sim-units-dir", "", "unit file directory of the simulated backend (default DATA_DIR/sim-units)")
	fs.StringVar(&s.MachineID, "machine-id", "", "this machine's ID (default: /etc/machine-id)")
	fs.StringVar(&s.PublicIP, "public-ip", "", "IP other machines and pithctl reach this one at (default: host of --advertise-client-urls)")
	fs.StringVar(&s.Metadata, "metadata", "", "machine metadata for MachineMetadata=, as key=value,key=value")
	fs.DurationVar(&s.AgentTTL, "agent-ttl", schedule.DefaultTTL, "a machine silent this long is dead and its units move")
	fs.Var(secondsOrDuration{&s.ReconcileInterval}, "engine-reconcile-interval", "how often the scheduling engine reconciles without a change: seconds (fleet's form, e.g. 2 or 0.5) or a duration (default: the heartbeat interval, agent-ttl/5)")
	fs.StringVar(&s.FleetSocket, "fleet-socket", "", "unix socket serving /fleet/v1 (default /var/run/fleet.sock on machines that run units; \"none\" to disable)")

	u := &c.Update
	fs.StringVar(&u.Server, "update-server", "", "release channel server URL (coreos.update.server); empty disables updates")
	fs.StringVar(&u.Channel, "update-channel", "stable", "release channel to follow (coreos.update.group)")
	fs.StringVar(&u.Strategy, "reboot-strategy", "best-effort", "after an update: reboot, etcd-lock, best-effort or off (coreos.update.reboot-strategy)")
	fs.StringVar(&u.WindowStart, "reboot-window-start", "", `reboot window start, e.g. "Thu 04:00" or "04:00" (coreos.locksmith.window-start)`)
	fs.StringVar(&u.WindowLength, "reboot-window-length", "", `reboot window length, e.g. "1h" (coreos.locksmith.window-length)`)
	fs.StringVar(&u.Group, "reboot-group", "", "reboot lock group (coreos.locksmith.group)")
	fs.IntVar(&u.LockMax, "reboot-lock-max", 0, "machines that may hold the reboot lock (of --reboot-group) at once; set on the cluster's semaphore at start (pith.update.max_holders; 0: leave it, locksmith's default is 1)")
	fs.DurationVar(&u.Interval, "update-interval", time.Hour, "time between channel checks (plus up to 10% jitter)")
	fs.DurationVar(&u.LockRetry, "reboot-lock-retry", 30*time.Second, "time between attempts to take a busy reboot lock")
	fs.DurationVar(&u.VerifyTimeout, "update-verify-timeout", 10*time.Minute, "after an update, how long the node may take to become healthy (KV quorum, its scheduled units running) before it goes back to the previous slot and releases the reboot lock (pith.update.verify_timeout)")
	fs.DurationVar(&u.UnitSettle, "update-unit-settle", update.DefaultUnitSettle, "after an update, how long each unit scheduled here must have run without a restart for the node to count as healthy (pith.update.unit_settle)")
	fs.StringSliceVar(&u.KeyDirs, "update-keys", []string{channels.ImageKeyDir, channels.OEMKeyDir}, "directories of trusted release keys (*.pub): the image's (pith build --release-key) and the OEM partition's; user-data's pith.update.public_keys add to them")
	fs.StringVar(&u.Disk, "update-disk", "", "boot disk holding USR-A/USR-B (default: the disk of pith.usr= on the kernel line)")
	fs.StringVar(&u.ESP, "update-esp", "/boot", "mount point of the EFI system partition (grubenv, pith/vmlinuz-*)")
	fs.StringVar(&u.StateDir, "update-state-dir", "", "downloads and update state (default DATA_DIR/update)")
	fs.StringVar(&u.Running, "update-running-version", "", "version of the running release (default: pithd's own)")
	fs.StringVar(&u.RebootCommand, "update-reboot-command", "systemctl reboot", "command that reboots the machine (a hook in simulations)")
	fs.StringVar(&u.Cmdline, "update-cmdline", "/proc/cmdline", "kernel command line to read pith.slot= and pith.usr= from (a file in simulations)")
	fs.StringVar(&u.Settings, "update-settings", node.SettingsPath, "user-data's coreos.update/coreos.locksmith/pith.update as pithd firstboot saved them (empty: none)")
	fs.StringVar(&u.OSRelease, "update-os-release", "/usr/lib/os-release", "os-release whose VERSION is the running release (when --update-running-version is not given)")
	fs.StringVar(&u.UpdateConf, "update-conf", "/etc/coreos/update.conf", "update_engine-style GROUP=/SERVER=/REBOOT_STRATEGY= defaults")
}

// Load fills the flags the command line left unset from, in this order
// (first wins): the environment (ETCD_*/FLEET_*, per node's settings
// table), the update settings first boot saved from user-data
// (--update-settings), and update.conf with LOCKSMITHD_* variables. fs
// must hold c's flags (AddFlags) and be parsed.
func (c *Config) Load(fs *pflag.FlagSet) error {
	if err := readEnvironment(fs); err != nil {
		return err
	}
	// user-data first: it is the operator's word for this boot;
	// update.conf fills what it leaves unset.
	keys, err := readUpdateSettings(fs, c.Update.Settings)
	if err != nil {
		return err
	}
	c.Update.ExtraKeys = keys
	return readUpdateConf(fs, c.Update.UpdateConf)
}

// readEnvironment sets each flag of the settings table that has a
// variable, is in fs and was not given on the command line, from the
// variable (etcd's rule: the command line wins).
func readEnvironment(fs *pflag.FlagSet) error {
	var errs []error
	for _, s := range node.Settings() {
		f := fs.Lookup(s.Flag)
		if s.Env == "" || f == nil || f.Changed {
			continue
		}
		if v, ok := os.LookupEnv(s.Env); ok {
			if err := fs.Set(s.Flag, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", s.Env, v, err))
			}
		}
	}
	return errors.Join(errs...)
}
