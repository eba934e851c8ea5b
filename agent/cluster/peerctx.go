package cluster

import (
	"context"
	"net/http"
)

type peerCtxKey struct{}

// FromPeer reports whether r arrived on this node's peer port: from a
// cluster member, directly or as a request a follower forwarded. That is
// the trust raft itself runs on (secure it with peer TLS and
// --peer-client-cert-auth, or by keeping the port private), so endpoints
// meant for members only (the scheduler's heartbeats) check it rather than
// carry a secret of their own. A header cannot fake it: the mark is set by
// the peer listener's server, never read from the request.
func FromPeer(r *http.Request) bool {
	v, _ := r.Context().Value(peerCtxKey{}).(bool)
	return v
}

// markPeer tags every request served on the peer port for FromPeer.
func markPeer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerCtxKey{}, true)))
	})
}
