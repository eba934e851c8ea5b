package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
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
	// Logf reports each step (the journal in pithd); may be nil.
	Logf func(format string, args ...any)

	mu      sync.Mutex
	changes []string
}

func (a *Applier) logf(format string, args ...any) {
	if a.Logf != nil {
		a.Logf(format, args...)
	}
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
	for i, f := range c.WriteFiles {
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
		a.logf("the OEM cloud-config's coreos.etcd2, coreos.fleet and pith: settings are ignored; give them in user-data")
	}
	return a.applyUnits(ctx, c.CoreOS.Units, envChanged)
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
		a.logf("wrote %s (%d settings for %s, %d of them in %s)", AgentDropIn, len(env), AgentUnit, len(secret), AgentSecretsFile)
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

func (a *Applier) setHostname(name string) error {
	p, err := a.path("/etc/hostname")
	if err != nil {
		return err
	}
	if _, err := a.write(p, []byte(name+"\n"), 0o644, 0, 0); err != nil {
		return fmt.Errorf("write /etc/hostname: %w", err)
	}
	if a.Host != nil {
		if err := a.Host.SetHostname(name); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	a.logf("hostname set to %s", name)
	return nil
}

// writeEtcHosts is manage_etc_hosts: localhost: the hostname resolves to
// the loopback address, as coreos-cloudinit wrote it.
func (a *Applier) writeEtcHosts(hostname string) error {
	if hostname == "" {
		if b, err := os.ReadFile(filepath.Join(a.Root, "etc/hostname")); err == nil {
			hostname = strings.TrimSpace(string(b))
		}
	}
	if hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		hostname = h
	}
	short, _, _ := strings.Cut(hostname, ".")
	names := hostname
	if short != hostname {
		names += " " + short
	}
	content := fmt.Sprintf("# Written by pithd from user-data (manage_etc_hosts: localhost).\n127.0.0.1 %s localhost\n::1 %s localhost ip6-localhost ip6-loopback\n", names, names)
	p, err := a.path("/etc/hosts")
	if err != nil {
		return err
	}
	_, err = a.write(p, []byte(content), 0o644, 0, 0)
	return err
}

func (a *Applier) writeOEMRelease(o cloudconfig.OEM) error {
	var b strings.Builder
	for _, kv := range [][2]string{{"ID", o.ID}, {"VERSION_ID", o.VersionID}, {"NAME", o.Name}, {"HOME_URL", o.HomeURL}, {"BUG_REPORT_URL", o.BugReportURL}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "%s=%q\n", kv[0], kv[1])
		}
	}
	p, err := a.path("/etc/oem-release")
	if err != nil {
		return err
	}
	_, err = a.write(p, []byte(b.String()), 0o644, 0, 0)
	return err
}

func (a *Applier) writeFile(f cloudconfig.File) error {
	data, err := cloudconfig.DecodeContent(f.Content, f.Encoding)
	if err != nil {
		return err
	}
	mode := uint64(0o644)
	if cloudconfig.IsPrivateKey(data) {
		mode = 0o600 // unless the user says otherwise: a key is a secret
	}
	if f.Permissions != "" {
		if mode, err = strconv.ParseUint(f.Permissions, 8, 32); err != nil {
			return fmt.Errorf("permissions %q: %w", f.Permissions, err)
		}
	}
	uid, gid, err := a.owner(f.Owner)
	if err != nil {
		return err
	}
	p, err := a.path(f.Path)
	if err != nil {
		return err
	}
	changed, err := a.write(p, data, fileMode(uint32(mode)), uid, gid)
	if err != nil {
		return err
	}
	if !changed {
		a.logf("%s unchanged", f.Path)
		return nil
	}
	a.logf("wrote %s (%d bytes, mode %04o)", f.Path, len(data), mode)
	return nil
}

// owner resolves "user", "user:group", "uid:gid" (and "user:" for the
// user's login group) against the accounts under the root.
func (a *Applier) owner(s string) (uid, gid int, err error) {
	if s == "" {
		return 0, 0, nil
	}
	user, group, hasGroup := strings.Cut(s, ":")
	acct := Account{}
	if n, err := strconv.Atoi(user); err == nil {
		uid = n
	} else {
		var ok bool
		acct, ok, err = a.Accounts.LookupUser(user)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			return 0, 0, fmt.Errorf("owner %q: no such user", s)
		}
		uid = acct.UID
	}
	switch {
	case !hasGroup:
		gid = 0
	case group == "" && acct.Name != "":
		gid = acct.GID
	case group == "":
		gid = 0
	default:
		if n, err := strconv.Atoi(group); err == nil {
			gid = n
		} else {
			g, ok, err := a.Accounts.LookupGroup(group)
			if err != nil {
				return 0, 0, err
			}
			if !ok {
				return 0, 0, fmt.Errorf("owner %q: no such group", s)
			}
			gid = g
		}
	}
	return uid, gid, nil
}

func (a *Applier) applyUser(ctx context.Context, u cloudconfig.User) error {
	spec := UserSpec{
		Name: u.Name, GECOS: u.GECOS, Homedir: u.Homedir, NoCreateHome: u.NoCreateHome,
		PrimaryGroup: u.PrimaryGroup, Groups: u.Groups, System: u.System, NoUserGroup: u.NoUserGroup,
		NoLogInit: u.NoLogInit, Shell: u.Shell, Inactive: u.Inactive,
	}
	if err := a.ensureUser(ctx, spec); err != nil {
		return err
	}
	if u.PasswordHash != "" {
		if err := a.Accounts.SetPasswordHash(ctx, u.Name, u.PasswordHash); err != nil {
			return err
		}
	}
	if u.LockPasswd != nil && *u.LockPasswd {
		if err := a.Accounts.LockPassword(ctx, u.Name); err != nil {
			return err
		}
	}
	if len(u.SSHAuthorizedKeys) > 0 {
		if err := a.setSSHKeys(u.Name, "pith-cloudinit", u.SSHAuthorizedKeys); err != nil {
			return err
		}
	}
	if len(u.Sudo.Rules) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "# Written by pithd from user-data.\n")
		for _, r := range u.Sudo.Rules {
			fmt.Fprintf(&b, "%s %s\n", u.Name, r)
		}
		p, err := a.path("/etc/sudoers.d/90-pith-" + u.Name)
		if err != nil {
			return err
		}
		// sudo ignores files that are not 0440 root:root.
		if _, err := a.write(p, []byte(b.String()), 0o440, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

func (a *Applier) ensureUser(ctx context.Context, spec UserSpec) error {
	// Groups named for the user are created when missing (as cloud-init
	// does), so a config is not half-applied because of a group.
	groups := append([]string{}, spec.Groups...)
	if spec.PrimaryGroup != "" {
		groups = append(groups, spec.PrimaryGroup)
	}
	for _, g := range groups {
		if _, err := strconv.Atoi(g); err == nil {
			continue // a gid
		}
		_, ok, err := a.Accounts.LookupGroup(g)
		if err != nil {
			return err
		}
		if !ok {
			a.logf("creating group %s for user %s", g, spec.Name)
			a.changed("created group %s", g)
			if err := a.Accounts.AddGroup(ctx, g, nil, spec.System, ""); err != nil {
				return err
			}
		}
	}
	_, exists, err := a.Accounts.LookupUser(spec.Name)
	if err != nil {
		return err
	}
	if exists {
		a.logf("user %s exists; updating", spec.Name)
		return a.Accounts.UpdateUser(ctx, spec)
	}
	a.logf("creating user %s", spec.Name)
	a.changed("created user %s", spec.Name)
	return a.Accounts.AddUser(ctx, spec)
}

func (a *Applier) ensureDefaultUser(ctx context.Context) error {
	_, ok, err := a.Accounts.LookupUser(DefaultUser)
	if err != nil || ok {
		return err
	}
	return a.Accounts.AddUser(ctx, UserSpec{Name: DefaultUser, GECOS: "Pith Admin", Shell: "/bin/bash"})
}

// setSSHKeys writes keys to ~user/.ssh/authorized_keys.d/<name> and
// rebuilds authorized_keys from every file in authorized_keys.d, as
// CoreOS's update-ssh-keys did, so keys from different sources coexist.
func (a *Applier) setSSHKeys(user, name string, keys []string) error {
	acct, ok, err := a.Accounts.LookupUser(user)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no such user %q for SSH keys", user)
	}
	home, err := a.path(acct.Home)
	if err != nil {
		return err
	}
	sshDir := filepath.Join(home, ".ssh")
	dDir := filepath.Join(sshDir, "authorized_keys.d")
	for _, d := range []string{home, sshDir, dDir} {
		if _, err := os.Lstat(d); os.IsNotExist(err) {
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
			if err := os.Lchown(d, acct.UID, acct.GID); err != nil {
				return err
			}
		}
	}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strings.TrimSpace(k))
		b.WriteByte('\n')
	}
	if _, err := a.write(filepath.Join(dDir, name), []byte(b.String()), 0o600, acct.UID, acct.GID); err != nil {
		return err
	}
	entries, err := os.ReadDir(dDir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var merged strings.Builder
	merged.WriteString("# auto-generated by pithd from ~/.ssh/authorized_keys.d; add keys there\n")
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dDir, n))
		if err != nil {
			return err
		}
		fmt.Fprintf(&merged, "# %s\n%s", n, data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			merged.WriteByte('\n')
		}
	}
	if _, err := a.write(filepath.Join(sshDir, "authorized_keys"), []byte(merged.String()), 0o600, acct.UID, acct.GID); err != nil {
		return err
	}
	a.logf("installed %d SSH key(s) for %s", len(keys), user)
	return nil
}

// unitDir is where unit files go: /etc/systemd/system, or
// /run/systemd/system for runtime units that must vanish at reboot.
// networkd's files (.network, .netdev, .link) go to /etc/systemd/network
// or /run/systemd/network, as coreos-cloudinit placed them.
func unitDir(runtime bool) string {
	if runtime {
		return "/run/systemd/system"
	}
	return "/etc/systemd/system"
}

func unitDirFor(u cloudconfig.Unit) string {
	if cloudconfig.IsNetworkUnit(u.Name) {
		if u.Runtime {
			return "/run/systemd/network"
		}
		return "/etc/systemd/network"
	}
	return unitDir(u.Runtime)
}

// NetworkdUnit is restarted when user-data changed networkd's files.
const NetworkdUnit = "systemd-networkd.service"

// applyUnits writes unit files and drop-ins, reloads systemd, enables and
// masks, then runs the commands, in that order (systemd must know a unit
// before it can enable or start it). Files already as written are left
// alone and systemd is reloaded only when a file changed (or reload is
// set), so applying the same units again only re-runs their commands.
// networkd's files take no command: networkd is restarted once, after
// all are written, when one changed.
func (a *Applier) applyUnits(ctx context.Context, units []cloudconfig.Unit, reload bool) error {
	if len(units) == 0 && !reload {
		return nil
	}
	network := false
	for _, u := range units {
		dir := unitDirFor(u)
		changed := false
		if u.Content != "" {
			p, err := a.path(filepath.Join(dir, u.Name))
			if err != nil {
				return err
			}
			c, err := a.write(p, []byte(u.Content), 0o644, 0, 0)
			if err != nil {
				return fmt.Errorf("unit %s: %w", u.Name, err)
			}
			changed = changed || c
		}
		for _, d := range u.DropIns {
			p, err := a.path(filepath.Join(dir, u.Name+".d", d.Name))
			if err != nil {
				return err
			}
			c, err := a.write(p, []byte(d.Content), 0o644, 0, 0)
			if err != nil {
				return fmt.Errorf("unit %s drop-in %s: %w", u.Name, d.Name, err)
			}
			changed = changed || c
		}
		if cloudconfig.IsNetworkUnit(u.Name) {
			network = network || changed
		} else {
			reload = reload || changed
		}
	}
	if a.Units == nil {
		return fmt.Errorf("units given but no systemd connection")
	}
	if reload {
		if err := a.Units.DaemonReload(ctx); err != nil {
			return fmt.Errorf("daemon-reload: %w", err)
		}
	}
	for _, u := range units {
		if cloudconfig.IsNetworkUnit(u.Name) {
			continue
		}
		switch {
		case u.Mask:
			if err := a.Units.Mask(ctx, []string{u.Name}, u.Runtime); err != nil {
				return fmt.Errorf("mask %s: %w", u.Name, err)
			}
		case u.Enable:
			if err := a.Units.Enable(ctx, []string{u.Name}, u.Runtime); err != nil {
				return fmt.Errorf("enable %s: %w", u.Name, err)
			}
		}
	}
	if network {
		if err := a.Units.Run(ctx, NetworkdUnit, "restart"); err != nil {
			return fmt.Errorf("restart %s: %w", NetworkdUnit, err)
		}
		a.logf("restart %s (network files changed)", NetworkdUnit)
		a.changed("restarted %s", NetworkdUnit)
	}
	for _, u := range units {
		if u.Command == "" || cloudconfig.IsNetworkUnit(u.Name) {
			continue
		}
		if err := a.Units.Run(ctx, u.Name, u.Command); err != nil {
			return fmt.Errorf("%s %s: %w", u.Command, u.Name, err)
		}
		a.logf("%s %s", u.Command, u.Name)
	}
	return nil
}

// ScriptPath is where a #! user-data script is kept and run from.
const ScriptPath = "/var/lib/pith/user-data-script"

// ScriptDonePath holds the SHA-256 of the user-data script that ran to its
// end (exited, whatever its status; not killed by a cut or a shutdown).
const ScriptDonePath = "/var/lib/pith/user-data-script.done"

// scriptDoneShell is the shell command that records, after the script's
// unit stopped, that the script with hash ran to its end: written beside,
// fsynced, renamed, directory fsynced (atomicfile's steps in sh).
func scriptDoneShell(done, hash string) string {
	return fmt.Sprintf(`[ "${EXIT_CODE}" = exited ] || exit 0; echo %s > %s.tmp && sync %s.tmp && mv %s.tmp %s && sync %s`,
		hash, done, done, done, done, filepath.Dir(done))
}

// scriptUnit runs the user-data script once, like coreos-cloudinit's
// transient unit: in the background, so a long script never holds up boot.
const scriptUnit = "pith-user-data-script.service"

// ApplyScript saves and starts a #! user-data script (first boot only).
// always=false starts it only when it differs from the saved one, so
// applying the same user-data again does not run it twice.
func (a *Applier) ApplyScript(ctx context.Context, script []byte, always bool) error {
	p, err := a.path(ScriptPath)
	if err != nil {
		return err
	}
	changed, err := a.write(p, script, 0o700, 0, 0)
	if err != nil {
		return err
	}
	if !changed && !always {
		a.logf("user-data script unchanged; not run again")
		return nil
	}
	sum := sha256.Sum256(script)
	hash := hex.EncodeToString(sum[:])
	if done, err := a.path(ScriptDonePath); err != nil {
		return err
	} else if b, _ := os.ReadFile(done); strings.TrimSpace(string(b)) == hash {
		// A first boot cut after the script ended, before it was
		// recorded as done: the script must not run twice.
		a.logf("user-data script already ran to its end (%s); not run again", ScriptDonePath)
		return nil
	}
	// The unit records the script's end itself (ExecStopPost), durably,
	// since that can come after first boot is recorded as done or after a
	// cut; "$$" is systemd's literal "$".
	unit := fmt.Sprintf("[Unit]\nDescription=User-data script from the datasource (first boot)\n\n[Service]\nType=simple\nExecStart=%s\nExecStopPost=/bin/sh -c '%s'\n",
		ScriptPath, strings.ReplaceAll(scriptDoneShell(ScriptDonePath, hash), "$", "$$"))
	up, err := a.path(filepath.Join(unitDir(true), scriptUnit))
	if err != nil {
		return err
	}
	if _, err := a.write(up, []byte(unit), 0o644, 0, 0); err != nil {
		return err
	}
	if a.Units == nil {
		return fmt.Errorf("script given but no systemd connection")
	}
	if err := a.Units.DaemonReload(ctx); err != nil {
		return err
	}
	a.changed("started %s", scriptUnit)
	return a.Units.Run(ctx, scriptUnit, "start")
}

// WriteEnvironment keeps the COREOS_*_IPV4/IPV6 lines of /etc/environment
// (and PITH_* twins) in step with the datasource's addresses, as CoreOS
// did, for units with EnvironmentFile=/etc/environment. Other lines are
// kept.
func (a *Applier) WriteEnvironment(addrs cloudconfig.Addresses) error {
	p, err := a.path("/etc/environment")
	if err != nil {
		return err
	}
	old, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	vars := []struct {
		suffix string
		ip     []byte
	}{{"PRIVATE_IPV4", addrs.PrivateIPv4}, {"PUBLIC_IPV4", addrs.PublicIPv4}, {"PRIVATE_IPV6", addrs.PrivateIPv6}, {"PUBLIC_IPV6", addrs.PublicIPv6}}
	ours := map[string]bool{}
	for _, v := range vars {
		ours["COREOS_"+v.suffix] = true
		ours["PITH_"+v.suffix] = true
	}
	var b strings.Builder
	for _, l := range strings.Split(string(old), "\n") {
		name, _, _ := strings.Cut(l, "=")
		if l == "" || ours[strings.TrimSpace(name)] {
			continue
		}
		b.WriteString(l + "\n")
	}
	n := 0
	for _, v := range vars {
		if len(v.ip) == 0 {
			continue
		}
		ip := net.IP(v.ip).String()
		fmt.Fprintf(&b, "COREOS_%s=%s\nPITH_%s=%s\n", v.suffix, ip, v.suffix, ip)
		n++
	}
	if n == 0 && len(old) == 0 {
		return nil
	}
	_, err = a.write(p, []byte(b.String()), 0o644, 0, 0)
	return err
}
