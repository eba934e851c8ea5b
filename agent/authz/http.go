package authz

import (
	"encoding/json"
	"net/http"
	"path"
	"strings"

	"github.com/pith-os/pith/pki"
)

// Guard applies Rules to a pithd handler.
type Guard struct {
	// Secure is set when a cluster CA is configured: every TCP request then
	// carries a verified client certificate with a role. Unset, only the
	// forwarded-role header is scrubbed (pithd without a CA is open to
	// whoever reaches it, which by default is 127.0.0.1 only).
	Secure bool
	// FromPeer reports a request that arrived on the peer port
	// (agent/cluster's FromPeer).
	FromPeer func(*http.Request) bool
	// FromSocket reports a request that arrived on root's unix socket.
	FromSocket func(*http.Request) bool
}

// Wrap refuses with 403 what the caller's role may not do, before h sees
// the request (so nothing changes), and records the role for forwarding.
func (g Guard) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, reason := g.role(r)
		if role == "" {
			forbid(w, reason)
			return
		}
		// Only the role decided here travels on: a client's own header is
		// replaced, on every port.
		r.Header.Set(RoleHeader, string(role))
		if !g.Secure {
			h.ServeHTTP(w, r)
			return
		}
		if !canonical(r.URL.Path) {
			forbid(w, "path "+r.URL.Path+" is not canonical")
			return
		}
		if ok, why := Decide(role, r.Method, r.URL.Path); !ok {
			forbid(w, why)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// role is who r comes from: root on the socket; without a CA, admin; on
// the peer port, the role a member forwarded (or member); else the client
// certificate's role. "" with the reason when there is none.
func (g Guard) role(r *http.Request) (pki.Role, string) {
	if g.FromSocket != nil && g.FromSocket(r) {
		return Root, ""
	}
	if !g.Secure {
		return pki.Admin, ""
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", "a client certificate from the cluster CA is required"
	}
	role, err := pki.RoleOf(r.TLS.VerifiedChains[0][0])
	if err != nil {
		return "", err.Error()
	}
	if g.FromPeer != nil && g.FromPeer(r) {
		if role != pki.Member {
			// The peer handshake takes members only; never trust a
			// forwarded role from anyone else.
			return "", "the peer port takes member certificates only"
		}
		if fwd := pki.Role(r.Header.Get(RoleHeader)); fwd != "" {
			if fwd != Root && fwd != pki.Admin && fwd != pki.Reader && fwd != pki.Member {
				return "", "forwarded role " + string(fwd) + " is unknown"
			}
			return fwd, ""
		}
		return pki.Member, ""
	}
	return role, ""
}

// canonical refuses dot segments and doubled slashes, so the path the
// table matched is the path the handler serves.
func canonical(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// forbid answers 403 with a one-line reason, readable by etcd's client
// ("message") and by fleet's ("error.message").
func forbid(w http.ResponseWriter, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusForbidden)
	b, _ := json.Marshal(map[string]any{
		"message": "forbidden: " + reason,
		"error":   map[string]any{"code": http.StatusForbidden, "message": "forbidden: " + reason},
	})
	w.Write(append(b, '\n'))
}
