package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/agent/cluster"
)

// memberNameFile records, in the data dir, the name this member runs
// under, so that a default that changes (the hostname) renames no member.
const memberNameFile = "member-name"

// memberName decides the name this member runs under. configured is
// --name, newName --new-member-name (the first-boot stage's hostname
// default, written when user-data names no member), stored the name
// recorded in the data dir ("" if none), hasState whether the data dir
// holds raft state. A member's identity is its ID (peer URLs and token),
// but its name is what /v2/members, discovery and operators know it by:
// a default must not rename an existing member. An explicit --name does
// (as etcd's --name does). note says why, when the name is not simply
// the configured one.
func memberName(configured, newName, stored string, hasState bool) (name, note string) {
	switch {
	case newName == "":
		if stored != "" && stored != configured {
			return configured, fmt.Sprintf("member renamed: --name %q differs from the name %q recorded in the data dir; using --name", configured, stored)
		}
		return configured, ""
	case stored != "":
		if stored != newName {
			return stored, fmt.Sprintf("keeping the member name %q recorded in the data dir; the default %q (--new-member-name) applies to new members only", stored, newName)
		}
		return stored, ""
	case hasState:
		// A data dir from a release that recorded no name: that release
		// ran the member under --name (the image's machine ID).
		if configured != newName {
			return configured, fmt.Sprintf("keeping the member name %q (--name) the data dir's state was made with; the default %q (--new-member-name) applies to new members only", configured, newName)
		}
		return configured, ""
	default:
		return newName, ""
	}
}

// resolveMemberName sets f.Name from memberName with the data dir's state
// and records it there.
func resolveMemberName(f *KVConfig, log *slog.Logger) error {
	path := filepath.Join(f.DataDir, memberNameFile)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("member name: %w", err)
	}
	stored := strings.TrimSpace(string(b))
	name, note := memberName(f.Name, f.NewMemberName, stored, cluster.HasState(f.DataDir))
	if note != "" {
		log.Warn(note, "name", name)
	}
	f.Name = name
	if name == stored || name == "" {
		return nil
	}
	if err := os.MkdirAll(f.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(name+"\n"), 0o600); err != nil {
		return fmt.Errorf("member name: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("member name: %w", err)
	}
	return nil
}
