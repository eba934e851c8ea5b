package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/cloudconfig"
)

// ApplyIgnition applies a validated Ignition config on first boot. Ignition
// runs once, so later boots do nothing. Pith applies it on the running
// system rather than in the initramfs, so units that Ignition would have
// enabled before systemd started are also started here.
//
// Files and links that exist and are not marked overwrite make the config
// fail, as in Ignition; that is checked for every entry before anything is
// written, so a conflicting config changes nothing.
func (a *Applier) ApplyIgnition(ctx context.Context, c *cloudconfig.IgnitionConfig, opt Options) error {
	if !opt.FirstBoot {
		return nil
	}
	rendered, fetcher, err := a.renderIgnition(ctx, *c, nil, 0)
	if err != nil {
		return fmt.Errorf("not applied, nothing of this Ignition config was written: %w", err)
	}
	c = &rendered
	contents, err := a.checkIgnition(ctx, c, fetcher)
	if err != nil {
		return fmt.Errorf("not applied, nothing of this Ignition config was written: %w", err)
	}
	if err := a.markIgnitionStarted(); err != nil {
		return err
	}
	for _, g := range c.Passwd.Groups {
		if err := a.applyIgnGroup(ctx, g); err != nil {
			return fmt.Errorf("group %s: %w", g.Name, err)
		}
	}
	for _, u := range c.Passwd.Users {
		if err := a.applyIgnUser(ctx, u); err != nil {
			return fmt.Errorf("user %s: %w", u.Name, err)
		}
	}
	if len(opt.MetadataSSHKeys) > 0 {
		if err := a.ensureDefaultUser(ctx); err != nil {
			return err
		}
		if err := a.setSSHKeys(DefaultUser, "pith-metadata", opt.MetadataSSHKeys); err != nil {
			return err
		}
	}
	for _, d := range c.Storage.Directories {
		if err := a.applyIgnDir(d); err != nil {
			return fmt.Errorf("directory %s: %w", d.Path, err)
		}
	}
	for i, f := range c.Storage.Files {
		if err := a.applyIgnFile(f, contents[i]); err != nil {
			return fmt.Errorf("file %s: %w", f.Path, err)
		}
	}
	for _, l := range c.Storage.Links {
		if err := a.applyIgnLink(l); err != nil {
			return fmt.Errorf("link %s: %w", l.Path, err)
		}
	}
	if err := a.ignHostname(c, opt); err != nil {
		return err
	}
	return a.applyIgnUnits(ctx, c.Systemd.Units)
}

// ignHostname sets the running hostname. Ignition writes /etc/hostname
// before systemd reads it at boot; Pith applies the config on the running
// system, so the name in that file must also be set now (before units, so
// their %H sees it). Without one, the datasource's hostname is used, as for
// cloud-config.
func (a *Applier) ignHostname(c *cloudconfig.IgnitionConfig, opt Options) error {
	p, err := a.path("/etc/hostname")
	if err != nil {
		return err
	}
	for _, f := range c.Storage.Files {
		if filepath.Clean(f.Path) != "/etc/hostname" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
		name := strings.TrimSpace(string(b))
		if name == "" || a.Host == nil {
			return nil
		}
		if err := a.Host.SetHostname(name); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
		a.log().Info("hostname set", "hostname", name, "from", "/etc/hostname")
		return nil
	}
	if opt.MetadataHostname == "" || !cloudconfig.ValidHostname(opt.MetadataHostname) {
		return nil
	}
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return a.setHostname(opt.MetadataHostname)
}

// fileData is a file's decoded contents and the data to append to it.
type fileData struct{ base, extra []byte }

// checkIgnition fetches every file's contents (checking each
// verification.hash) and checks overwrite rules before anything is
// written.
func (a *Applier) checkIgnition(ctx context.Context, c *cloudconfig.IgnitionConfig, fetcher *ignFetcher) ([]fileData, error) {
	contents := make([]fileData, len(c.Storage.Files))
	var errs []error
	for i, f := range c.Storage.Files {
		data, err := fetcher.fetch(ctx, f.Contents)
		if err != nil {
			errs = append(errs, fmt.Errorf("file %s: %w", f.Path, err))
			continue
		}
		var extra []byte
		for _, ap := range f.Append {
			more, err := fetcher.fetch(ctx, ap)
			if err != nil {
				errs = append(errs, fmt.Errorf("file %s append: %w", f.Path, err))
			}
			extra = append(extra, more...)
		}
		contents[i] = fileData{data, extra}
		p, err := a.path(f.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f.Contents.Source == nil && len(f.Append) == 0 {
			continue // only mode/owner
		}
		if old, err := os.ReadFile(p); err == nil && (f.Overwrite == nil || !*f.Overwrite) && len(f.Append) == 0 && !bytes.Equal(old, data) {
			errs = append(errs, fmt.Errorf("file %s exists and overwrite is not true", f.Path))
		}
	}
	for _, l := range c.Storage.Links {
		p, err := a.path(l.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if t, err := os.Readlink(p); err == nil && (l.Overwrite == nil || !*l.Overwrite) && l.Target != nil && t != *l.Target {
			errs = append(errs, fmt.Errorf("link %s exists (to %s) and overwrite is not true", l.Path, t))
		}
	}
	users, groups := map[string]bool{}, map[string]bool{}
	for _, u := range c.Passwd.Users {
		users[u.Name] = true
		groups[u.Name] = !boolv(u.NoUserGroup)
		groups[str(u.PrimaryGroup)] = true
		for _, g := range u.Groups {
			groups[string(g)] = true
		}
	}
	for _, g := range c.Passwd.Groups {
		groups[g.Name] = true
	}
	errs = append(errs, a.checkNames(users, groups, func(yield func(path, user, group string) bool) {
		nodes := []igntypes.Node{}
		for _, f := range c.Storage.Files {
			nodes = append(nodes, f.Node)
		}
		for _, d := range c.Storage.Directories {
			nodes = append(nodes, d.Node)
		}
		for _, l := range c.Storage.Links {
			nodes = append(nodes, l.Node)
		}
		for _, n := range nodes {
			if n.User.ID == nil && n.Group.ID == nil && !yield(n.Path, str(n.User.Name), str(n.Group.Name)) {
				return
			}
		}
	}))
	return contents, errors.Join(errs...)
}

func (a *Applier) ignOwner(u igntypes.NodeUser, g igntypes.NodeGroup) (int, int, error) {
	uid, gid := 0, 0
	switch {
	case u.ID != nil:
		uid = *u.ID
	case u.Name != nil && *u.Name != "":
		acct, ok, err := a.Accounts.LookupUser(*u.Name)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			return 0, 0, fmt.Errorf("no such user %q", *u.Name)
		}
		uid = acct.UID
	}
	switch {
	case g.ID != nil:
		gid = *g.ID
	case g.Name != nil && *g.Name != "":
		id, ok, err := a.Accounts.LookupGroup(*g.Name)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			return 0, 0, fmt.Errorf("no such group %q", *g.Name)
		}
		gid = id
	}
	return uid, gid, nil
}

func (a *Applier) applyIgnFile(f igntypes.File, fd fileData) error {
	p, err := a.path(f.Path)
	if err != nil {
		return err
	}
	uid, gid, err := a.ignOwner(f.User, f.Group)
	if err != nil {
		return err
	}
	data := append(append([]byte{}, fd.base...), fd.extra...)
	mode := uint32(0o644)
	if cloudconfig.IsPrivateKey(data) {
		mode = 0o600 // unless the config gives a mode: a key is a secret
	}
	if f.Mode != nil {
		mode = uint32(*f.Mode)
	}
	if len(f.Append) > 0 && !boolv(f.Overwrite) {
		// Append to what is there (Ignition's rule without overwrite).
		old, err := os.ReadFile(p)
		switch {
		case err == nil:
			data = append(old, fd.extra...)
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	if f.Contents.Source == nil && len(f.Append) == 0 {
		if _, err := os.Stat(p); err == nil {
			if err := os.Lchown(p, uid, gid); err != nil {
				return err
			}
			return os.Chmod(p, fileMode(mode))
		}
	}
	changed, err := a.write(p, data, fileMode(mode), uid, gid)
	if err != nil {
		return err
	}
	if changed {
		a.log().Info("wrote file", "path", f.Path, "bytes", len(data), "mode", fmt.Sprintf("%04o", mode))
	}
	return nil
}

func (a *Applier) applyIgnDir(d igntypes.Directory) error {
	p, err := a.path(d.Path)
	if err != nil {
		return err
	}
	if err := mkdirAll(p); err != nil {
		return err
	}
	uid, gid, err := a.ignOwner(d.User, d.Group)
	if err != nil {
		return err
	}
	mode := uint32(0o755)
	if d.Mode != nil {
		mode = uint32(*d.Mode)
	}
	if err := os.Lchown(p, uid, gid); err != nil {
		return err
	}
	return os.Chmod(p, fileMode(mode))
}

func (a *Applier) applyIgnLink(l igntypes.Link) error {
	p, err := a.path(l.Path)
	if err != nil {
		return err
	}
	if l.Target == nil {
		return fmt.Errorf("no target")
	}
	if err := mkdirAll(filepath.Dir(p)); err != nil {
		return err
	}
	tmp := p + ".pith-link"
	os.Remove(tmp)
	if l.Hard != nil && *l.Hard {
		target, err := a.path(*l.Target)
		if err != nil {
			return err
		}
		err = os.Link(target, tmp)
		if err != nil {
			return err
		}
	} else if err := os.Symlink(*l.Target, tmp); err != nil {
		return err
	}
	uid, gid, err := a.ignOwner(l.User, l.Group)
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Lchown(tmp, uid, gid); err != nil {
		os.Remove(tmp)
		return err
	}
	return atomicfile.Rename(tmp, p)
}

func (a *Applier) applyIgnGroup(ctx context.Context, g igntypes.PasswdGroup) error {
	_, exists, err := a.Accounts.LookupGroup(g.Name)
	if err != nil {
		return err
	}
	if g.ShouldExist != nil && !*g.ShouldExist {
		if exists {
			return a.Accounts.DeleteGroup(ctx, g.Name)
		}
		return nil
	}
	if exists {
		return nil
	}
	hash := ""
	if g.PasswordHash != nil {
		hash = *g.PasswordHash
	}
	return a.Accounts.AddGroup(ctx, g.Name, g.Gid, g.System != nil && *g.System, hash)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func boolv(p *bool) bool { return p != nil && *p }

func (a *Applier) applyIgnUser(ctx context.Context, u igntypes.PasswdUser) error {
	if u.ShouldExist != nil && !*u.ShouldExist {
		if _, exists, err := a.Accounts.LookupUser(u.Name); err != nil || !exists {
			return err
		}
		return a.Accounts.DeleteUser(ctx, u.Name)
	}
	spec := UserSpec{
		Name: u.Name, GECOS: str(u.Gecos), Homedir: str(u.HomeDir), NoCreateHome: boolv(u.NoCreateHome),
		PrimaryGroup: str(u.PrimaryGroup), System: boolv(u.System), NoUserGroup: boolv(u.NoUserGroup),
		NoLogInit: boolv(u.NoLogInit), Shell: str(u.Shell), UID: u.UID,
	}
	for _, g := range u.Groups {
		spec.Groups = append(spec.Groups, string(g))
	}
	if err := a.ensureUser(ctx, spec); err != nil {
		return err
	}
	if h := str(u.PasswordHash); h != "" {
		if err := a.Accounts.SetPasswordHash(ctx, u.Name, h); err != nil {
			return err
		}
	}
	if len(u.SSHAuthorizedKeys) > 0 {
		keys := make([]string, len(u.SSHAuthorizedKeys))
		for i, k := range u.SSHAuthorizedKeys {
			keys[i] = string(k)
		}
		return a.setSSHKeys(u.Name, "pith-ignition", keys)
	}
	return nil
}

func (a *Applier) applyIgnUnits(ctx context.Context, units []igntypes.Unit) error {
	if len(units) == 0 {
		return nil
	}
	for _, u := range units {
		if u.Contents != nil {
			p, err := a.path(filepath.Join(unitDir(false), u.Name))
			if err != nil {
				return err
			}
			if _, err := a.write(p, []byte(*u.Contents), 0o644, 0, 0); err != nil {
				return err
			}
		}
		for _, d := range u.Dropins {
			if d.Contents == nil {
				continue
			}
			p, err := a.path(filepath.Join(unitDir(false), u.Name+".d", d.Name))
			if err != nil {
				return err
			}
			if _, err := a.write(p, []byte(*d.Contents), 0o644, 0, 0); err != nil {
				return err
			}
		}
	}
	if a.Units == nil {
		return fmt.Errorf("units given but no systemd connection")
	}
	if err := a.Units.DaemonReload(ctx); err != nil {
		return err
	}
	for _, u := range units {
		var err error
		switch {
		case boolv(u.Mask):
			err = a.Units.Mask(ctx, []string{u.Name}, false)
		case u.Enabled != nil && *u.Enabled:
			err = a.Units.Enable(ctx, []string{u.Name}, false)
		case u.Enabled != nil && !*u.Enabled:
			err = a.Units.Disable(ctx, []string{u.Name}, false)
		}
		if err != nil {
			return fmt.Errorf("unit %s: %w", u.Name, err)
		}
	}
	for _, u := range units {
		if u.Enabled != nil && *u.Enabled && !boolv(u.Mask) {
			if err := a.Units.Run(ctx, u.Name, "start"); err != nil {
				return fmt.Errorf("start %s: %w", u.Name, err)
			}
		}
	}
	return nil
}
