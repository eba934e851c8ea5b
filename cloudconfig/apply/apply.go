package apply

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pith-os/pith/cloudconfig"
)

// DefaultUser receives the top-level ssh_authorized_keys and the
// datasource's keys, as "core" did on CoreOS.
const DefaultUser = "core"

// Applier applies parsed user-data under Root.
type Applier struct {
	Root     string
	Accounts Accounts
	Units    Units
	Host     Host
	// Log gets each step (pithd firstboot sends it to the console and
	// the journal); nil discards.
	Log *slog.Logger

	mu      sync.Mutex
	changes []string
}

// discard is the logger of an Applier without Log.
var discard = slog.New(slog.DiscardHandler)

// log returns a.Log, or a logger that discards.
func (a *Applier) log() *slog.Logger {
	if a.Log == nil {
		return discard
	}
	return a.Log
}

// Options say which boot this is.
type Options struct {
	// FirstBoot applies everything. Later boots re-apply only what
	// coreos-cloudinit re-applied on every boot: hostname, write_files,
	// /etc/hosts and units (so runtime units and files under /run come
	// back); users, passwords, SSH keys and scripts are first boot only,
	// so an operator's later changes to accounts are not undone.
	FirstBoot bool
	// MetadataSSHKeys are the datasource's keys, given to DefaultUser.
	MetadataSSHKeys []string
	// MetadataHostname is the datasource's hostname, used when the
	// cloud-config sets none (as coreos-cloudinit did).
	MetadataHostname string
	// OEM marks the OEM partition's cloud-config: it does not configure
	// pithd (coreos.etcd2, coreos.fleet and pith: belong to the user's
	// user-data, applied after it), so the agent's drop-in is left alone.
	OEM bool
}

// ApplyCloudConfig applies a validated cloud-config. The caller must have
// checked its report: apply assumes every value passed validation.
func (a *Applier) ApplyCloudConfig(ctx context.Context, c *cloudconfig.Config, opt Options) error {
	if err := a.checkOwners(c, opt); err != nil {
		return err
	}
	hostname := c.Hostname
	if hostname == "" && opt.MetadataHostname != "" && cloudconfig.ValidHostname(opt.MetadataHostname) {
		hostname = opt.MetadataHostname
	}
	if hostname != "" {
		if err := a.setHostname(hostname); err != nil {
			return err
		}
	}
	if opt.FirstBoot {
		for _, u := range c.Users {
			if err := a.applyUser(ctx, u); err != nil {
				return fmt.Errorf("user %s: %w", u.Name, err)
			}
		}
		keys := append(append([]string{}, c.SSHAuthorizedKeys...), opt.MetadataSSHKeys...)
		if len(keys) > 0 {
			if err := a.ensureDefaultUser(ctx); err != nil {
				return err
			}
			if err := a.setSSHKeys(DefaultUser, "pith-cloudinit", keys); err != nil {
				return err
			}
		}
	}
	var installFiles []cloudconfig.File
	var installUnits []cloudconfig.Unit
	if !opt.OEM { // pith.install is for user-data only
		var err error
		if installFiles, installUnits, err = installPlan(c.Pith.Install); err != nil {
			return err
		}
	}
	for i, f := range slices.Concat(c.WriteFiles, installFiles) {
		if err := a.writeFile(f); err != nil {
			return fmt.Errorf("write_files[%d] %s: %w", i, f.Path, err)
		}
	}
	if c.ManageEtcHosts == "localhost" {
		if err := a.writeEtcHosts(hostname); err != nil {
			return err
		}
	}
	if c.CoreOS.OEM.ID != "" {
		if err := a.writeOEMRelease(c.CoreOS.OEM); err != nil {
			return err
		}
	}
	envChanged := false
	if !opt.OEM {
		var err error
		if envChanged, err = a.writeAgentEnv(c); err != nil {
			return err
		}
	} else if len(AgentEnv(c)) > 0 {
		a.log().Info("the OEM cloud-config's coreos.etcd2, coreos.fleet and pith: settings are ignored; give them in user-data")
	}
	return a.applyUnits(ctx, slices.Concat(c.CoreOS.Units, installUnits), envChanged)
}

// writeAgentEnv writes AgentDropIn and, for credentials, AgentSecretsFile
// (0600), or removes stale ones; systemd must then be reloaded so the next
// start of pithd.service sees them.
func (a *Applier) writeAgentEnv(c *cloudconfig.Config) (changed bool, err error) {
	env := AgentEnv(c)
	plain, secret := splitSecrets(env)
	sp, err := a.path(AgentSecretsFile)
	if err != nil {
		return false, err
	}
	if len(secret) > 0 {
		text, err := agentSecrets(secret)
		if err != nil {
			return false, err
		}
		if changed, err = a.write(sp, []byte(text), 0o600, 0, 0); err != nil {
			return false, err
		}
	} else if changed, err = a.remove(sp); err != nil {
		return false, err
	}
	p, err := a.path(AgentDropIn)
	if err != nil {
		return false, err
	}
	if len(env) == 0 {
		removed, err := a.remove(p)
		return changed || removed, err
	}
	text, err := agentDropIn(plain, len(secret) > 0)
	if err != nil {
		return false, err
	}
	wrote, err := a.write(p, []byte(text), 0o644, 0, 0)
	if err != nil {
		return false, err
	}
	if wrote {
		a.log().Info("wrote the agent's settings", "path", AgentDropIn, "unit", AgentUnit, "settings", len(env), "secret", len(secret), "secrets_file", AgentSecretsFile)
	}
	return changed || wrote, nil
}

// remove deletes p if it exists, recording the change.
func (a *Applier) remove(p string) (bool, error) {
	err := os.Remove(p)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	a.changed("removed %s", a.shown(p))
	return true, nil
}

func (a *Applier) path(p string) (string, error) { return under(a.Root, p) }

// checkOwners makes sure every write_files owner exists or is created by
// this config, before anything is changed.
func (a *Applier) checkOwners(c *cloudconfig.Config, opt Options) error {
	users, groups := map[string]bool{}, map[string]bool{}
	if opt.FirstBoot {
		for _, u := range c.Users {
			users[u.Name] = true
			if !u.NoUserGroup {
				groups[u.Name] = true
			}
			groups[u.PrimaryGroup] = true
			for _, g := range u.Groups {
				groups[g] = true
			}
		}
	}
	return a.checkNames(users, groups, func(yield func(path, user, group string) bool) {
		for _, f := range c.WriteFiles {
			u, g, _ := strings.Cut(f.Owner, ":")
			if !yield(f.Path, u, g) {
				return
			}
		}
	})
}

// checkNames reports owners (by name) that neither exist nor are about to.
func (a *Applier) checkNames(users, groups map[string]bool, owners func(func(path, user, group string) bool)) error {
	var missing []string
	owners(func(path, u, g string) bool {
		if _, err := strconv.Atoi(u); u != "" && err != nil && !users[u] {
			if _, ok, err := a.Accounts.LookupUser(u); err == nil && !ok {
				missing = append(missing, fmt.Sprintf("%s: no user %q", path, u))
			}
		}
		if _, err := strconv.Atoi(g); g != "" && err != nil && !groups[g] {
			if _, ok, err := a.Accounts.LookupGroup(g); err == nil && !ok {
				missing = append(missing, fmt.Sprintf("%s: no group %q", path, g))
			}
		}
		return true
	})
	if len(missing) > 0 {
		return fmt.Errorf("owners that do not exist (nothing applied): %s", strings.Join(missing, "; "))
	}
	return nil
}
