package cluster

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
)

// ForwardedHeader marks a request a follower forwarded, so it is never
// forwarded twice.
const ForwardedHeader = "X-Pith-Forwarded"

// Forward relays a client request to the leader over the peer port and
// copies the answer back once this node applied the log as far as the
// answer reflects (read-your-writes, see readyourwrites.go). body is the
// request body already read.
func (n *Node) Forward(w http.ResponseWriter, r *http.Request, body []byte) error {
	if r.Header.Get(ForwardedHeader) != "" {
		return ErrNotLeader
	}
	addr, ctx, cancel := n.toLeader(r.Context())
	defer cancel()
	if addr == "" {
		return ErrNoLeader
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+addr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	req.Header.Set(ForwardedHeader, n.id)
	resp, err := n.fwd.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			// The request never left: the leader is gone (not yet noticed).
			return ErrNoLeader
		}
		return lostLeader(ctx, err)
	}
	defer resp.Body.Close()
	if err := n.awaitAnswer(r.Context(), resp.Header); err != nil {
		return err
	}
	resp.Header.Del(AnswerIndexHeader)
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	return nil
}
