package fleetv1

import (
	"net/http"
	"strings"
)

// NewClientWith speaks to base (scheme://host[:port]) through hc: for a
// caller that sets up TLS client certificates or a unix socket dialer
// itself (pithctl).
func NewClientWith(base string, hc *http.Client) *Client {
	return &Client{base: strings.TrimRight(base, "/"), http: hc}
}
