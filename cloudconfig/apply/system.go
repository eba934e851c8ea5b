package apply

import (
	"context"
)

// UserSpec is an account to create or update, from cloud-config or Ignition.
type UserSpec struct {
	Name         string
	GECOS        string
	Homedir      string
	NoCreateHome bool
	PrimaryGroup string
	Groups       []string
	System       bool
	NoUserGroup  bool
	NoLogInit    bool
	Shell        string
	UID          *int
	Inactive     bool // expire the account (cloud-init's inactive: true)
}

// Account is an existing user.
type Account struct {
	Name     string
	UID, GID int
	Home     string
}

// Accounts manages users and groups.
type Accounts interface {
	// LookupUser returns the account, or ok=false if there is none.
	LookupUser(name string) (a Account, ok bool, err error)
	// LookupGroup returns the group's id, or ok=false.
	LookupGroup(name string) (gid int, ok bool, err error)
	AddUser(ctx context.Context, u UserSpec) error
	// UpdateUser adds groups, and sets the fields useradd would have set
	// that make sense to change on an existing account.
	UpdateUser(ctx context.Context, u UserSpec) error
	// SetPasswordHash sets a crypt(3) hash (never a plain password).
	SetPasswordHash(ctx context.Context, name, hash string) error
	LockPassword(ctx context.Context, name string) error
	DeleteUser(ctx context.Context, name string) error
	AddGroup(ctx context.Context, name string, gid *int, system bool, passwordHash string) error
	DeleteGroup(ctx context.Context, name string) error
}

// Units manages systemd units whose files the applier has written.
type Units interface {
	DaemonReload(ctx context.Context) error
	// Enable and Mask take unit names; runtime puts the links under /run.
	Enable(ctx context.Context, names []string, runtime bool) error
	Disable(ctx context.Context, names []string, runtime bool) error
	Mask(ctx context.Context, names []string, runtime bool) error
	// Run queues a command (start, stop, restart, reload, try-restart,
	// reload-or-restart, reload-or-try-restart) for a unit.
	Run(ctx context.Context, name, command string) error
}

// Host sets the running system's hostname (the file is written by the
// applier).
type Host interface {
	SetHostname(name string) error
}
