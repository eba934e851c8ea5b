package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pith-os/pith/agent/cluster"
	"github.com/pith-os/pith/agent/kv"
)

// kvRaft adapts cluster.Node to the KV's Raft interface (the KV
// namespace is bound here so the kv package does not import cluster).
type kvRaft struct{ *cluster.Node }

// errNoLeader is answered when a request provably did not reach the log
// (301, "During Leader Election"): clients may retry it safely. Other
// failures answer 300, whose outcome is unknown, as in etcd.
func errNoLeader() error {
	return kv.NewError(kv.EcodeLeaderElect, "no leader took the request; it was not applied; retry", 0)
}

// Propose goes through the leader when this member follows, and returns
// once this member applied the write (read-your-writes).
func (r kvRaft) Propose(ctx context.Context, cmd []byte) (any, uint64, error) {
	res, idx, err := r.Node.ProposeAnywhere(ctx, cluster.NamespaceKV, cmd)
	switch {
	case errors.Is(err, cluster.ErrLeaderTooOld):
		return nil, 0, kv.ErrForward
	case errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrNoLeader):
		return nil, 0, errNoLeader()
	}
	return res, idx, err
}

func (r kvRaft) Forward(w http.ResponseWriter, req *http.Request, body []byte) error {
	err := r.Node.Forward(w, req, body)
	if errors.Is(err, cluster.ErrNoLeader) || errors.Is(err, cluster.ErrNotLeader) {
		return errNoLeader()
	}
	return err
}

// parseInitialCluster reads name=url,name=url (a name may repeat for
// several URLs), keeping first-seen order.
func parseInitialCluster(s string) ([]cluster.InitialMember, error) {
	var out []cluster.InitialMember
	idx := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" || u == "" {
			return nil, fmt.Errorf("--initial-cluster entry %q: want name=peerURL", part)
		}
		if _, err := url.Parse(u); err != nil {
			return nil, fmt.Errorf("--initial-cluster entry %q: %w", part, err)
		}
		if i, ok := idx[name]; ok {
			out[i].PeerURLs = append(out[i].PeerURLs, u)
			continue
		}
		idx[name] = len(out)
		out = append(out, cluster.InitialMember{Name: name, PeerURLs: []string{u}})
	}
	if len(out) == 0 {
		return nil, errors.New("--initial-cluster is empty")
	}
	return out, nil
}

// buildKV makes the cluster's raft node and the KV store on it, and
// routes the KV's, the members' and (with --enable-pprof) the profiler's
// paths on the client mux. With --kv=false it builds nothing.
func (d *Daemon) buildKV(ctx context.Context) error {
	f := &d.cfg.KV
	if !f.Enabled {
		return nil
	}
	if err := f.applySecurity(d.log); err != nil {
		return err
	}
	if f.DataDir == "" {
		f.DataDir = f.Name + ".etcd"
	}
	if err := resolveMemberName(f, d.log); err != nil {
		return err
	}
	if len(f.ListenPeerURLs) != 1 {
		return errors.New("--listen-peer-urls: give exactly one URL")
	}
	peerHost, peerURL, err := listenHostPort(f.ListenPeerURLs[0])
	if err != nil {
		return fmt.Errorf("--listen-peer-urls: %w", err)
	}
	members, state := []cluster.InitialMember(nil), f.InitialClusterState
	switch {
	case f.Discovery != "":
		members, state, err = d.discoverCluster(ctx)
		if err != nil {
			return err
		}
	case f.InitialCluster == "":
		members = []cluster.InitialMember{{Name: f.Name, PeerURLs: f.InitialAdvertisePeerURLs}}
	default:
		if members, err = parseInitialCluster(f.InitialCluster); err != nil {
			return err
		}
	}
	cfg := cluster.Config{
		Name: f.Name, DataDir: f.DataDir, ListenPeer: peerHost,
		PeerURLs: f.InitialAdvertisePeerURLs, ClientURLs: f.AdvertiseClientURLs,
		InitialCluster: members, InitialClusterState: state, Token: f.InitialClusterToken,
		MaxVoters: f.MaxVoters, HeartbeatInterval: time.Duration(f.HeartbeatMS) * time.Millisecond,
		ElectionTimeout: time.Duration(f.ElectionMS) * time.Millisecond, SnapshotCount: f.SnapshotCount,
		SnapshotInterval: f.SnapshotInterval,
		Log:              d.log,
	}
	if peerURL.Scheme == "https" {
		if cfg.PeerServerTLS, err = f.PeerTLS.ServerConfig(); err != nil {
			return fmt.Errorf("peer TLS: %w", err)
		}
	}
	for _, u := range f.InitialAdvertisePeerURLs {
		if strings.HasPrefix(u, "https:") {
			if cfg.PeerClientTLS, err = f.PeerTLS.ClientConfig(); err != nil {
				return fmt.Errorf("peer TLS: %w", err)
			}
		}
	}
	if (cfg.PeerServerTLS == nil) != (cfg.PeerClientTLS == nil) {
		return errors.New("peer TLS: --listen-peer-urls and --initial-advertise-peer-urls must both be https or both http")
	}
	node, err := cluster.New(cfg)
	if err != nil {
		return err
	}
	store := kv.NewStore(kv.Options{MaxWatchers: f.MaxWatchers})
	if err := node.Register(cluster.NamespaceKV, store); err != nil {
		return err
	}
	d.node = node
	d.kvServer = kv.NewServer(store, kvRaft{node}, kv.Limits{MaxBodyBytes: f.MaxRequestBytes, MaxValueBytes: f.MaxValueBytes})
	node.OnLeader(d.kvServer.RunExpiry)
	d.kvServer.RegisterHTTP(d.mux)
	node.RegisterHTTP(d.mux)
	if f.EnablePprof {
		registerPprof(d.mux)
	}
	return nil
}

// discoverCluster bootstraps from a discovery URL: founders get the
// founding member list; later nodes ask the running cluster to add them
// and start as "existing". A node with a data dir skips discovery (it
// rejoins from its own state).
func (d *Daemon) discoverCluster(ctx context.Context) ([]cluster.InitialMember, string, error) {
	f := &d.cfg.KV
	self := []cluster.InitialMember{{Name: f.Name, PeerURLs: f.InitialAdvertisePeerURLs}}
	if cluster.HasState(f.DataDir) {
		return self, "existing", nil
	}
	// An https discovery service may have a certificate from the cluster
	// CA (or a public one): the client trusts both.
	client, err := cluster.DiscoveryClient(cmp.Or(f.ClientTLS.TrustedCAFile, f.PeerTLS.TrustedCAFile))
	if err != nil {
		return nil, "", fmt.Errorf("discovery: %w", err)
	}
	disc := &cluster.Discovery{URL: f.Discovery, Name: f.Name, ID: cluster.MemberID(f.InitialAdvertisePeerURLs, f.InitialClusterToken), PeerURLs: f.InitialAdvertisePeerURLs, Client: client}
	res, err := disc.Run(ctx)
	if err != nil {
		return nil, "", err
	}
	if res.Founder {
		d.log.Info("discovery: founding member", "size", res.Size)
		return res.Founders, "new", nil
	}
	var peerTLS *tls.Config
	if strings.HasPrefix(res.Founders[0].PeerURLs[0], "https:") {
		if peerTLS, err = f.PeerTLS.ClientConfig(); err != nil {
			return nil, "", fmt.Errorf("peer TLS: %w", err)
		}
	}
	d.log.Info("discovery: cluster is full, joining it", "size", res.Size)
	for {
		jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := cluster.JoinCluster(jctx, res.Founders, peerTLS, f.Name, f.InitialAdvertisePeerURLs)
		cancel()
		if err == nil {
			return res.Founders, "existing", nil
		}
		d.log.Warn("discovery: join", "err", err)
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
