// Package authz decides which role may call which route of pithd, from one
// table (Rules). Roles come from the client certificate, checked against the
// cluster CA by the TLS layer (pki); the unix socket is root's and may do
// everything; without a cluster CA nothing is checked (pithd then listens on
// 127.0.0.1 only unless told otherwise, and says so).
//
// Requests a follower forwards to the leader arrive on the peer port with
// the forwarding member's certificate: the follower authorised the client
// and passes its role along in RoleHeader, which the leader trusts only on
// the peer port (from a member) and checks against the table again.
package authz

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pith-os/pith/pki"
)

// Root is the role of the node's unix socket: everything a role may do.
const Root pki.Role = "root"

// RoleHeader carries the role a forwarded request was authorised as.
const RoleHeader = "X-Pith-Role"

// Rule grants Roles the Methods on a path: Path ending in "/" matches that
// prefix, any other path only itself. Ports are told apart by role: the
// peer port takes member certificates only (pki, at the handshake).
type Rule struct {
	Methods []string
	Path    string
	Roles   []pki.Role
}

var (
	read    = []string{"GET", "HEAD"}
	write   = []string{"PUT", "POST", "DELETE", "PATCH"}
	anyone  = []pki.Role{pki.Admin, pki.Reader, pki.Member}
	readers = []pki.Role{pki.Admin, pki.Reader}
	admins  = []pki.Role{pki.Admin}
	members = []pki.Role{pki.Member}
	joiners = []pki.Role{pki.Admin, pki.Member}
)

// Rules is every route of the client and peer ports and who may call it.
// The first rule that matches path and method decides; none: 403.
var Rules = []Rule{
	// Liveness and versions: anyone the CA vouches for (load balancers,
	// clients picking the API version, members probing each other).
	{read, "/health", anyone},
	{read, "/version", anyone},

	// etcd v2 keys: readers read and watch, admins write. The reboot lock
	// (locksmith's semaphore) is a key, so taking or breaking it is a write.
	{read, "/v2/keys", readers},
	{read, "/v2/keys/", readers},
	{write, "/v2/keys", admins},
	{write, "/v2/keys/", admins},
	{read, "/v2/stats/", readers},
	{read, "/v2/machines", readers},

	// Members: listing is reading; adding is an admin's change or a new
	// node joining through discovery (it holds a member certificate);
	// removing is an admin's.
	{read, "/v2/members", readers},
	{read, "/v2/members/", readers},
	{[]string{"POST"}, "/v2/members", joiners},
	{[]string{"DELETE"}, "/v2/members/", admins},

	// fleet's API: list units, state and machines; submit, start, stop,
	// destroy are admins'.
	{read, "/fleet/v1/", readers},
	{write, "/fleet/v1/", admins},

	// The scheduler's heartbeats: members only (and only on the peer port,
	// which the schedule service checks too).
	{[]string{"POST"}, "/pith/v1/schedule/heartbeat", members},

	// A node's units (status, journal) and its updater and reboot locks.
	{read, "/pith/v1/units/", readers},
	{read, "/pith/v1/update", readers},
	{read, "/pith/v1/update/history", readers},
	{[]string{"POST"}, "/pith/v1/update/check", admins},
	{read, "/pith/v1/locks", readers},
	{[]string{"POST"}, "/pith/v1/locks/", admins},

	// Profiling shows memory contents: admins only.
	{read, "/debug/pprof/", admins},
}

// Decide reports whether role may call method on path, and the one-line
// reason when not.
func Decide(role pki.Role, method, path string) (bool, string) {
	if role == Root {
		return true, ""
	}
	for _, r := range Rules {
		if !matchPath(r.Path, path) || !slices.Contains(r.Methods, method) {
			continue
		}
		if slices.Contains(r.Roles, role) {
			return true, ""
		}
		return false, fmt.Sprintf("role %s may not %s %s (allowed: %s)", role, method, path, roleList(r.Roles))
	}
	return false, fmt.Sprintf("no route %s %s for role %s", method, path, role)
}

func matchPath(rule, path string) bool {
	if strings.HasSuffix(rule, "/") {
		return strings.HasPrefix(path, rule)
	}
	return path == rule
}

func roleList(rs []pki.Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}
