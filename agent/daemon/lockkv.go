package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	etcd "go.etcd.io/etcd/client/v2"

	"github.com/pith-os/pith/rebootlock"
)

// lockKV is the reboot lock's KV client. Without a cluster CA it dials the
// advertised client URLs. With one, those ports take only client
// certificates and a member's certificate has no client route, so the
// lock goes through root's unix socket, which pithd serves every route on
// without a certificate.
func lockKV(f *KVConfig) (*rebootlock.EtcdKV, error) {
	if !f.Secure() {
		return rebootlock.NewEtcdKV(f.AdvertiseClientURLs)
	}
	if f.UnixSocket == "" {
		return nil, errors.New("the reboot lock needs --unix-socket with a cluster CA (the client ports take only client certificates)")
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", f.UnixSocket)
	}}
	c, err := etcd.New(etcd.Config{Endpoints: []string{"http://localhost"}, Transport: tr})
	if err != nil {
		return nil, fmt.Errorf("KV client: %w", err)
	}
	return &rebootlock.EtcdKV{Keys: etcd.NewKeysAPI(c)}, nil
}
