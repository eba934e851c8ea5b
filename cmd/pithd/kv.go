package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"time"

	"github.com/pith-os/pith/agent/cluster"
	"github.com/pith-os/pith/agent/kv"
)

// kvFlags are etcd's flag names (each also read from ETCD_<NAME>).
var kvFlags struct {
	enabled                  bool
	name                     string
	dataDir                  string
	listenClientURLs         []string
	advertiseClientURLs      []string
	listenPeerURLs           []string
	initialAdvertisePeerURLs []string
	initialCluster           string
	initialClusterState      string
	initialClusterToken      string
	discovery                string
	heartbeatMS              int
	electionMS               int
	snapshotCount            uint64
	snapshotInterval         time.Duration
	maxVoters                int
	maxWatchers              int
	maxRequestBytes          int64
	maxValueBytes            int
	enablePprof              bool
	client, peer             cluster.TLSInfo
}

func init() {
	fs := runCmd.Flags()
	f := &kvFlags
	fs.BoolVar(&f.enabled, "kv", true, "run the KV store (etcd v2 API) and the cluster's raft")
	fs.StringVar(&f.name, "name", "default", "human-readable name for this member")
	fs.StringVar(&f.dataDir, "data-dir", "", "path to the data directory (default ${name}.etcd)")
	fs.StringSliceVar(&f.listenClientURLs, "listen-client-urls", []string{"http://localhost:2379"}, "URLs to listen on for client traffic")
	fs.StringSliceVar(&f.advertiseClientURLs, "advertise-client-urls", []string{"http://localhost:2379"}, "client URLs to advertise to the rest of the cluster")
	fs.StringSliceVar(&f.listenPeerURLs, "listen-peer-urls", []string{"http://localhost:2380"}, "URL to listen on for peer traffic (raft and forwarded writes)")
	fs.StringSliceVar(&f.initialAdvertisePeerURLs, "initial-advertise-peer-urls", []string{"http://localhost:2380"}, "this member's peer URLs to advertise to the rest of the cluster")
	fs.StringVar(&f.initialCluster, "initial-cluster", "", "initial cluster configuration for bootstrapping: name=peerURL,... (default ${name}=${initial-advertise-peer-urls})")
	fs.StringVar(&f.initialClusterState, "initial-cluster-state", "new", `"new" to found a cluster, "existing" to join one (after pithctl member add)`)
	fs.StringVar(&f.initialClusterToken, "initial-cluster-token", "etcd-cluster", "initial cluster token, unique per cluster")
	fs.StringVar(&f.discovery, "discovery", "", "discovery URL used to bootstrap the cluster")
	fs.IntVar(&f.heartbeatMS, "heartbeat-interval", 100, "time (in milliseconds) of a heartbeat interval")
	fs.IntVar(&f.electionMS, "election-timeout", 1000, "time (in milliseconds) for an election to timeout")
	fs.Uint64Var(&f.snapshotCount, "snapshot-count", 10000, "number of committed entries between snapshots")
	fs.DurationVar(&f.snapshotInterval, "snapshot-interval", 10*time.Second, "how often to check whether --snapshot-count entries accumulated")
	fs.IntVar(&f.maxVoters, "max-voters", 5, "raft voters at most; further members join as non-voters")
	fs.IntVar(&f.maxWatchers, "max-watchers", 10000, "concurrent watchers this member serves at most")
	fs.Int64Var(&f.maxRequestBytes, "max-request-bytes", 2<<20, "largest request body accepted")
	fs.IntVar(&f.maxValueBytes, "max-value-bytes", 1<<20, "largest value accepted")
	fs.BoolVar(&f.enablePprof, "enable-pprof", false, "serve runtime profiling data under /debug/pprof/ on the client port")
	fs.StringVar(&f.client.CertFile, "cert-file", "", "path to the client server TLS cert file")
	fs.StringVar(&f.client.KeyFile, "key-file", "", "path to the client server TLS key file")
	fs.StringVar(&f.client.TrustedCAFile, "trusted-ca-file", "", "path to the client server TLS trusted CA file")
	fs.BoolVar(&f.client.ClientCertAuth, "client-cert-auth", false, "require client certificates signed by --trusted-ca-file")
	fs.StringVar(&f.peer.CertFile, "peer-cert-file", "", "path to the peer server TLS cert file")
	fs.StringVar(&f.peer.KeyFile, "peer-key-file", "", "path to the peer server TLS key file")
	fs.StringVar(&f.peer.TrustedCAFile, "peer-trusted-ca-file", "", "path to the peer server TLS trusted CA file")
	fs.BoolVar(&f.peer.ClientCertAuth, "peer-client-cert-auth", false, "require peer certificates signed by --peer-trusted-ca-file")
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

// kvRunner starts and stops the KV once subsystems registered.
type kvRunner struct {
	env     *runEnv
	node    *cluster.Node
	server  *kv.Server
	clients []*http.Server
	errc    chan error
}

// kvRaft adapts cluster.Node to the KV's Raft interface (the KV
// namespace is bound here so the kv package does not import cluster).
type kvRaft struct{ *cluster.Node }

// errNoLeader is answered when a request provably did not reach the log
// (301, "During Leader Election"): clients may retry it safely. Other
// failures answer 300, whose outcome is unknown, as in etcd.
func errNoLeader() error {
	return kv.NewError(kv.EcodeLeaderElect, "no leader took the request; it was not applied; retry", 0)
}

func (r kvRaft) Propose(ctx context.Context, cmd []byte) (any, uint64, error) {
	res, idx, err := r.Node.Propose(ctx, cluster.NamespaceKV, cmd)
	if errors.Is(err, cluster.ErrNotLeader) {
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

func listenHostPort(u string) (string, *url.URL, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", nil, err
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		return "", nil, fmt.Errorf("URL %q: scheme must be http or https", u)
	}
	if p.Port() == "" {
		return "", nil, fmt.Errorf("URL %q: needs a port", u)
	}
	return p.Host, p, nil
}

func setupKV(ctx context.Context, env *runEnv) (*kvRunner, error) {
	f := &kvFlags
	r := &kvRunner{env: env, errc: make(chan error, 4)}
	if !f.enabled {
		return r, nil
	}
	if f.dataDir == "" {
		f.dataDir = f.name + ".etcd"
	}
	env.DataDir = f.dataDir
	if len(f.listenPeerURLs) != 1 {
		return nil, errors.New("--listen-peer-urls: give exactly one URL")
	}
	peerHost, peerURL, err := listenHostPort(f.listenPeerURLs[0])
	if err != nil {
		return nil, fmt.Errorf("--listen-peer-urls: %w", err)
	}
	members, state := []cluster.InitialMember(nil), f.initialClusterState
	switch {
	case f.discovery != "":
		members, state, err = discoverCluster(ctx, env, f.discovery)
		if err != nil {
			return nil, err
		}
	case f.initialCluster == "":
		members = []cluster.InitialMember{{Name: f.name, PeerURLs: f.initialAdvertisePeerURLs}}
	default:
		if members, err = parseInitialCluster(f.initialCluster); err != nil {
			return nil, err
		}
	}
	cfg := cluster.Config{
		Name: f.name, DataDir: f.dataDir, ListenPeer: peerHost,
		PeerURLs: f.initialAdvertisePeerURLs, ClientURLs: f.advertiseClientURLs,
		InitialCluster: members, InitialClusterState: state, Token: f.initialClusterToken,
		MaxVoters: f.maxVoters, HeartbeatInterval: time.Duration(f.heartbeatMS) * time.Millisecond,
		ElectionTimeout: time.Duration(f.electionMS) * time.Millisecond, SnapshotCount: f.snapshotCount,
		SnapshotInterval: f.snapshotInterval,
		Log:              env.Log,
	}
	if peerURL.Scheme == "https" {
		if cfg.PeerServerTLS, err = f.peer.ServerConfig(); err != nil {
			return nil, fmt.Errorf("peer TLS: %w", err)
		}
	}
	for _, u := range f.initialAdvertisePeerURLs {
		if strings.HasPrefix(u, "https:") {
			if cfg.PeerClientTLS, err = f.peer.ClientConfig(); err != nil {
				return nil, fmt.Errorf("peer TLS: %w", err)
			}
		}
	}
	if (cfg.PeerServerTLS == nil) != (cfg.PeerClientTLS == nil) {
		return nil, errors.New("peer TLS: --listen-peer-urls and --initial-advertise-peer-urls must both be https or both http")
	}
	node, err := cluster.New(cfg)
	if err != nil {
		return nil, err
	}
	store := kv.NewStore(kv.Options{MaxWatchers: f.maxWatchers})
	if err := node.Register(cluster.NamespaceKV, store); err != nil {
		return nil, err
	}
	r.node, env.Cluster, env.KV = node, node, store
	r.server = kv.NewServer(store, kvRaft{node}, kv.Limits{MaxBodyBytes: f.maxRequestBytes, MaxValueBytes: f.maxValueBytes})
	node.OnLeader(r.server.RunExpiry)
	r.server.RegisterHTTP(env.Mux)
	node.RegisterHTTP(env.Mux)
	if f.enablePprof {
		env.Mux.HandleFunc("/debug/pprof/", pprof.Index)
		env.Mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		env.Mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		env.Mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		env.Mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return r, nil
}

// handler routes /v2/keys straight to the KV (http.ServeMux would redirect
// keys with ".." instead of answering the etcd error) and the rest to the mux.
func (r *kvRunner) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.server != nil && (req.URL.Path == kv.KeysPrefix || strings.HasPrefix(req.URL.Path, kv.KeysPrefix+"/")) {
			r.server.ServeHTTP(w, req)
			return
		}
		r.env.Mux.ServeHTTP(w, req)
	})
}

func (r *kvRunner) start(ctx context.Context) error {
	f := &kvFlags
	h := r.handler()
	if r.node != nil {
		if err := r.node.Start(h); err != nil {
			return err
		}
	}
	var clientTLS *tls.Config
	for _, u := range f.listenClientURLs {
		host, p, err := listenHostPort(u)
		if err != nil {
			return fmt.Errorf("--listen-client-urls: %w", err)
		}
		ln, err := net.Listen("tcp", host)
		if err != nil {
			return fmt.Errorf("listen for clients on %s: %w", host, err)
		}
		if p.Scheme == "https" {
			if clientTLS == nil {
				if clientTLS, err = f.client.ServerConfig(); err != nil {
					ln.Close()
					return fmt.Errorf("client TLS: %w", err)
				}
			}
			ln = tls.NewListener(ln, clientTLS)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10}
		r.clients = append(r.clients, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				r.errc <- fmt.Errorf("client listener %s: %w", host, err)
			}
		}()
	}
	return nil
}

func (r *kvRunner) stop() {
	for _, s := range r.clients {
		// Watches are long polls: close rather than wait for them.
		_ = s.Close()
	}
	if r.node != nil {
		if err := r.node.Stop(); err != nil {
			r.env.Log.Warn("raft shutdown", "err", err)
		}
	}
}

// discoverCluster bootstraps from a discovery URL: founders get the
// founding member list; later nodes ask the running cluster to add them
// and start as "existing". A node with a data dir skips discovery (it
// rejoins from its own state).
func discoverCluster(ctx context.Context, env *runEnv, discoURL string) ([]cluster.InitialMember, string, error) {
	f := &kvFlags
	self := []cluster.InitialMember{{Name: f.name, PeerURLs: f.initialAdvertisePeerURLs}}
	if cluster.HasState(f.dataDir) {
		return self, "existing", nil
	}
	d := &cluster.Discovery{URL: discoURL, Name: f.name, ID: cluster.MemberID(f.initialAdvertisePeerURLs, f.initialClusterToken), PeerURLs: f.initialAdvertisePeerURLs}
	res, err := d.Run(ctx)
	if err != nil {
		return nil, "", err
	}
	if res.Founder {
		env.Log.Info("discovery: founding member", "size", res.Size)
		return res.Founders, "new", nil
	}
	var peerTLS *tls.Config
	if strings.HasPrefix(res.Founders[0].PeerURLs[0], "https:") {
		if peerTLS, err = f.peer.ClientConfig(); err != nil {
			return nil, "", fmt.Errorf("peer TLS: %w", err)
		}
	}
	env.Log.Info("discovery: cluster is full, joining it", "size", res.Size)
	for {
		jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := cluster.JoinCluster(jctx, res.Founders, peerTLS, f.name, f.initialAdvertisePeerURLs)
		cancel()
		if err == nil {
			return res.Founders, "existing", nil
		}
		env.Log.Warn("discovery: join", "err", err)
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
