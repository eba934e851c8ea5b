package rootfs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// account is a user the image ships, written straight into the passwd
// files: useradd would stamp today's date and pick ids by the build host's
// history; this is reproducible.
type account struct {
	Name   string
	UID    int // also the id of the user's own group
	Gecos  string
	Home   string
	Shell  string
	Groups []string // supplementary groups; each must exist
}

// coreUser is CoreOS's "core" user: uid 500, no password (SSH keys from
// user-data are the way in), passwordless sudo (sudoers.d/core), docker and
// the journal without sudo. Its home is made at boot by tmpfiles.d.
var coreUser = account{
	Name:   "core",
	UID:    500,
	Gecos:  "Pith Admin",
	Home:   "/home/core",
	Shell:  "/bin/bash",
	Groups: []string{"adm", "sudo", "docker", "systemd-journal"},
}

// accountDB holds the four account files' contents.
type accountDB struct {
	Passwd, Shadow, Group, Gshadow string
}

var accountFiles = []string{"passwd", "shadow", "group", "gshadow"}

func (db *accountDB) fields() []*string {
	return []*string{&db.Passwd, &db.Shadow, &db.Group, &db.Gshadow}
}

func readAccounts(etc string) (accountDB, error) {
	var db accountDB
	for i, f := range db.fields() {
		b, err := os.ReadFile(filepath.Join(etc, accountFiles[i]))
		if err != nil {
			return db, err
		}
		*f = string(b)
	}
	return db, nil
}

// writeAccounts rewrites the files in place, keeping their modes and owners
// (shadow is root:shadow 0640).
func writeAccounts(etc string, db accountDB) error {
	for i, f := range db.fields() {
		p := filepath.Join(etc, accountFiles[i])
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		_, err = fh.WriteString(*f)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// addAccount returns db with a added: its passwd and shadow entries, its own
// group, and membership in a.Groups. day is the password's "last changed"
// date in days since 1970 (from the build's epoch).
func addAccount(db accountDB, a account, day int64) (accountDB, error) {
	for _, l := range lines(db.Passwd) {
		f := strings.Split(l, ":")
		if f[0] == a.Name {
			return db, fmt.Errorf("user %s already exists", a.Name)
		}
		if len(f) > 2 && f[2] == strconv.Itoa(a.UID) {
			return db, fmt.Errorf("uid %d of user %s is taken by %s", a.UID, a.Name, f[0])
		}
	}
	for _, l := range lines(db.Group) {
		f := strings.Split(l, ":")
		if f[0] == a.Name {
			return db, fmt.Errorf("group %s already exists", a.Name)
		}
		if len(f) > 2 && f[2] == strconv.Itoa(a.UID) {
			return db, fmt.Errorf("gid %d of group %s is taken by %s", a.UID, a.Name, f[0])
		}
	}
	var err error
	if db.Group, err = addMember(db.Group, a.Groups, a.Name, 3); err != nil {
		return db, err
	}
	if db.Gshadow, err = addMember(db.Gshadow, a.Groups, a.Name, 3); err != nil {
		return db, err
	}
	db.Passwd = appendLine(db.Passwd, fmt.Sprintf("%s:x:%d:%d:%s:%s:%s", a.Name, a.UID, a.UID, a.Gecos, a.Home, a.Shell))
	// "*": no password can match, yet the account is not locked ("!"), so
	// sshd still accepts keys.
	db.Shadow = appendLine(db.Shadow, fmt.Sprintf("%s:*:%d:0:99999:7:::", a.Name, day))
	db.Group = appendLine(db.Group, fmt.Sprintf("%s:x:%d:", a.Name, a.UID))
	db.Gshadow = appendLine(db.Gshadow, fmt.Sprintf("%s:!::", a.Name))
	return db, nil
}

// addMember appends user to the member list (field index col) of each named
// group in a group or gshadow file.
func addMember(file string, groups []string, user string, col int) (string, error) {
	if len(groups) == 0 {
		return file, nil
	}
	ls := lines(file)
	for _, g := range groups {
		found := false
		for i, l := range ls {
			f := strings.Split(l, ":")
			if f[0] != g || len(f) <= col {
				continue
			}
			found = true
			var members []string
			if f[col] != "" {
				members = strings.Split(f[col], ",")
			}
			if !slices.Contains(members, user) {
				members = append(members, user)
			}
			f[col] = strings.Join(members, ",")
			ls[i] = strings.Join(f, ":")
		}
		if !found {
			return "", fmt.Errorf("group %s does not exist", g)
		}
	}
	return strings.Join(ls, "\n") + "\n", nil
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func appendLine(file, line string) string {
	if file != "" && !strings.HasSuffix(file, "\n") {
		file += "\n"
	}
	return file + line + "\n"
}
