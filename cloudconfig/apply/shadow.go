package apply

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Shadow manages accounts with shadow-utils' tools, which take the locks
// on /etc/passwd, /etc/shadow and /etc/group that other tools respect.
// With Root other than "/", useradd/usermod/groupadd/userdel/groupdel run
// with --prefix and chpasswd with --root, so tests use a temp root.
type Shadow struct{ Root string }

func (s *Shadow) rooted() bool { return s.Root != "" && s.Root != "/" }

func (s *Shadow) run(ctx context.Context, stdin string, name string, args ...string) error {
	if s.rooted() {
		flag := "--prefix"
		if name == "chpasswd" {
			flag = "--root" // chpasswd has no --prefix
		}
		args = append([]string{flag, s.Root}, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		// Never echo stdin: it may hold a password hash.
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// LookupUser implements Accounts by reading ROOT/etc/passwd.
func (s *Shadow) LookupUser(name string) (Account, bool, error) {
	var a Account
	found, err := scanColon(filepath.Join(s.rootDir(), "etc/passwd"), func(f []string) bool {
		if len(f) < 7 || f[0] != name {
			return false
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return false
		}
		a = Account{Name: name, UID: uid, GID: gid, Home: f[5]}
		return true
	})
	return a, found, err
}

// LookupGroup implements Accounts by reading ROOT/etc/group.
func (s *Shadow) LookupGroup(name string) (int, bool, error) {
	gid := -1
	found, err := scanColon(filepath.Join(s.rootDir(), "etc/group"), func(f []string) bool {
		if len(f) < 3 || f[0] != name {
			return false
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			return false
		}
		gid = n
		return true
	})
	return gid, found, err
}

func (s *Shadow) rootDir() string {
	if s.Root == "" {
		return "/"
	}
	return s.Root
}

func scanColon(p string, match func([]string) bool) (bool, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if match(strings.Split(sc.Text(), ":")) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// AddUser implements Accounts with useradd.
func (s *Shadow) AddUser(ctx context.Context, u UserSpec) error {
	var args []string
	if u.GECOS != "" {
		args = append(args, "--comment", u.GECOS)
	}
	if u.Homedir != "" {
		args = append(args, "--home-dir", u.Homedir)
	}
	if u.NoCreateHome || u.System {
		args = append(args, "--no-create-home")
	} else {
		args = append(args, "--create-home")
	}
	if u.PrimaryGroup != "" {
		args = append(args, "--gid", u.PrimaryGroup)
	}
	if len(u.Groups) > 0 {
		args = append(args, "--groups", strings.Join(u.Groups, ","))
	}
	if u.System {
		args = append(args, "--system")
	}
	if u.NoUserGroup {
		args = append(args, "--no-user-group")
	}
	if u.NoLogInit {
		args = append(args, "--no-log-init")
	}
	if u.Shell != "" {
		args = append(args, "--shell", u.Shell)
	}
	if u.UID != nil {
		args = append(args, "--uid", strconv.Itoa(*u.UID))
	}
	if err := s.run(ctx, "", "useradd", append(args, u.Name)...); err != nil {
		return err
	}
	if u.Inactive {
		// useradd drops --expiredate for system accounts; usermod does not.
		return s.run(ctx, "", "usermod", "--expiredate", "1", u.Name)
	}
	return nil
}

// UpdateUser implements Accounts with usermod: it adds supplementary
// groups and sets the comment, shell and expiry when given.
func (s *Shadow) UpdateUser(ctx context.Context, u UserSpec) error {
	var args []string
	if len(u.Groups) > 0 {
		args = append(args, "--append", "--groups", strings.Join(u.Groups, ","))
	}
	if u.GECOS != "" {
		args = append(args, "--comment", u.GECOS)
	}
	if u.Shell != "" {
		args = append(args, "--shell", u.Shell)
	}
	if u.PrimaryGroup != "" {
		args = append(args, "--gid", u.PrimaryGroup)
	}
	if u.Inactive {
		args = append(args, "--expiredate", "1")
	}
	if len(args) == 0 {
		return nil
	}
	return s.run(ctx, "", "usermod", append(args, u.Name)...)
}

// SetPasswordHash implements Accounts with chpasswd -e, so the hash goes
// through stdin and never shows in the process list.
func (s *Shadow) SetPasswordHash(ctx context.Context, name, hash string) error {
	if strings.ContainsAny(hash, ":\n") || strings.ContainsAny(name, ":\n") {
		return fmt.Errorf("password hash for %s contains ':' or a newline", name)
	}
	return s.run(ctx, name+":"+hash+"\n", "chpasswd", "--encrypted")
}

// LockPassword implements Accounts with usermod --lock.
func (s *Shadow) LockPassword(ctx context.Context, name string) error {
	return s.run(ctx, "", "usermod", "--lock", name)
}

// DeleteUser implements Accounts with userdel.
func (s *Shadow) DeleteUser(ctx context.Context, name string) error {
	return s.run(ctx, "", "userdel", name)
}

// AddGroup implements Accounts with groupadd.
func (s *Shadow) AddGroup(ctx context.Context, name string, gid *int, system bool, hash string) error {
	var args []string
	if gid != nil {
		args = append(args, "--gid", strconv.Itoa(*gid))
	}
	if system {
		args = append(args, "--system")
	}
	if hash != "" {
		args = append(args, "--password", hash)
	}
	return s.run(ctx, "", "groupadd", append(args, name)...)
}

// DeleteGroup implements Accounts with groupdel.
func (s *Shadow) DeleteGroup(ctx context.Context, name string) error {
	return s.run(ctx, "", "groupdel", name)
}
