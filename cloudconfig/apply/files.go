package apply

// write_files: each file written with its mode and owner.

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
)

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
		a.log().Info("file unchanged", "path", f.Path)
		return nil
	}
	a.log().Info("wrote file", "path", f.Path, "bytes", len(data), "mode", fmt.Sprintf("%04o", mode))
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
