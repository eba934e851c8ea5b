package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// InitialMember is one entry of --initial-cluster.
type InitialMember struct {
	Name     string
	PeerURLs []string
}

// Config is a node's raft configuration, named after etcd's flags.
type Config struct {
	Name    string
	DataDir string
	// ListenPeer is the host:port the peer port listens on.
	ListenPeer string
	// PeerURLs are this node's advertised peer URLs; the first is dialed.
	PeerURLs   []string
	ClientURLs []string
	// InitialCluster lists the founding members ("new") or the members
	// known at join time ("existing").
	InitialCluster      []InitialMember
	InitialClusterState string // "new" or "existing"
	Token               string
	// PeerServerTLS and PeerClientTLS enable (mutual) TLS on the peer port.
	PeerServerTLS, PeerClientTLS *tls.Config
	// MaxVoters caps raft voters; later members join as non-voters.
	MaxVoters         int
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	SnapshotCount     uint64
	// SnapshotInterval is how often raft checks whether SnapshotCount
	// entries accumulated (default 10 s).
	SnapshotInterval time.Duration
	Log              *slog.Logger
}

// Node is one member of the raft cluster.
type Node struct {
	cfg     Config
	id      string
	fsm     *fsm
	members *membership
	raft    *raft.Raft
	trans   timedTransport
	notices commitNotices
	// proposals queue a follower's writes for the leader (forward.go).
	proposals chan *proposal
	pstreams  proposalStreams
	mux       *peerMux
	logs      *logStore
	httpSrv   *http.Server
	fwd       *http.Client
	// leaderw ends forwarded requests when the leader changes.
	leaderw changeSignal
	log     *slog.Logger
	start   time.Time

	leaderHooks []func(context.Context)
	// readyTerm is the term in which this leader's barrier completed: from
	// then on its state machines hold every committed entry.
	readyTerm atomic.Uint64
	// termStart is the log index from which entries are of readyTerm.
	termStart atomic.Uint64
	stats     leaderStats
	stop      chan struct{}
	// streamNotice is the latest commit notice this follower's proposal
	// stream brought, for raft (proposalstream.go).
	streamNotice streamNotices
	wg           sync.WaitGroup
}

// Errors callers map onto client-visible answers.
var (
	ErrNotLeader   = errors.New("not the raft leader")
	ErrNoLeader    = errors.New("no raft leader (election in progress)")
	ErrMemberExist = errors.New("peerURL exists")
	ErrNoMember    = errors.New("no such member")
)

// New validates cfg and prepares a node; Start runs it.
func New(cfg Config) (*Node, error) {
	if cfg.Name == "" {
		return nil, errors.New("--name is empty: give this member a name")
	}
	if len(cfg.PeerURLs) == 0 {
		return nil, errors.New("no advertised peer URL: set --initial-advertise-peer-urls")
	}
	for _, u := range cfg.PeerURLs {
		if _, err := peerAddr(u); err != nil {
			return nil, err
		}
	}
	if cfg.InitialClusterState == "" {
		cfg.InitialClusterState = "new"
	}
	if cfg.InitialClusterState != "new" && cfg.InitialClusterState != "existing" {
		return nil, fmt.Errorf("--initial-cluster-state %q: must be new or existing", cfg.InitialClusterState)
	}
	if cfg.MaxVoters <= 0 {
		cfg.MaxVoters = 5
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 100 * time.Millisecond
	}
	if cfg.ElectionTimeout <= 0 {
		cfg.ElectionTimeout = time.Second
	}
	if cfg.SnapshotCount == 0 {
		cfg.SnapshotCount = 10000
	}
	if cfg.SnapshotInterval <= 0 {
		cfg.SnapshotInterval = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	n := &Node{cfg: cfg, id: MemberID(cfg.PeerURLs, cfg.Token), fsm: newFSM(), members: newMembership(), log: cfg.Log, stop: make(chan struct{}), proposals: make(chan *proposal, 4*maxProposalBatch), streamNotice: streamNotices{kick: make(chan struct{}, 1)}}
	if err := n.fsm.register(NamespaceMembers, n.members); err != nil {
		return nil, err
	}
	return n, nil
}

// ID is this member's ID (hex).
func (n *Node) ID() string { return n.id }

// Name is this member's name.
func (n *Node) Name() string { return n.cfg.Name }

// Register adds a state machine to the shared log. Call before Start.
func (n *Node) Register(ns Namespace, sm StateMachine) error {
	if ns == NamespaceMembers {
		return errors.New("cluster: namespace 0 is the membership's")
	}
	return n.fsm.register(ns, sm)
}

// OnLeader registers work that runs while this node leads (TTL expiry,
// the scheduler's engine). ctx ends when leadership is lost. The hook
// starts after the leader has applied every committed entry.
func (n *Node) OnLeader(f func(ctx context.Context)) { n.leaderHooks = append(n.leaderHooks, f) }

// Start opens the data dir, binds the peer port, and starts raft.
// handler serves client requests forwarded from followers.
func (n *Node) Start(handler http.Handler) error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
	logs, err := openLogStore(cfg.DataDir, n.log)
	if err != nil {
		return err
	}
	n.logs = logs
	n.fsm.beforePersist = logs.sync.syncAll
	n.fsm.durable = func(i uint64) error { return logs.sync.waitDurable(i, n.stop) }
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hl)
	if err != nil {
		logs.Close()
		return fmt.Errorf("snapshot store: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.ListenPeer)
	if err != nil {
		logs.Close()
		return fmt.Errorf("listen on peer address %s: %w", cfg.ListenPeer, err)
	}
	n.mux = newPeerMux(ln, cfg.PeerServerTLS, cfg.PeerClientTLS, n.log)
	adv, err := peerAddr(cfg.PeerURLs[0])
	if err != nil {
		n.mux.Close()
		logs.Close()
		return fmt.Errorf("--initial-advertise-peer-urls: %w", err)
	}
	trans := newTimedTransport(raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: raftStream{m: n.mux, advertise: advertisedAddr(adv)}, MaxPool: 4, Timeout: 10 * time.Second, Logger: hl}))
	trans.stats, trans.durable, trans.acked, trans.sent = &n.stats, logs.sync.durableIndex, n.notices.acked, n.notices.sent
	n.trans = trans
	n.notices.mu.Lock()
	n.notices.start = func(id raft.ServerID, p *noticePeer) {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.sendNotices(id, p) }()
	}
	n.notices.mu.Unlock()
	n.fwd = peerHTTPClient(n.mux)
	rc := raftConfig(n.id, cfg, hl)

	existing, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		trans.Close()
		n.mux.Close()
		logs.Close()
		return err
	}
	var boot *raft.Configuration
	if !existing && cfg.InitialClusterState == "new" {
		c, err := n.bootConfiguration()
		if err != nil {
			trans.Close()
			n.mux.Close()
			logs.Close()
			return err
		}
		boot = &c
	}
	// Recent entries from memory: replication to followers reads them
	// without going to bolt.
	cached, err := raft.NewLogCache(1024, logs)
	if err != nil {
		trans.Close()
		n.mux.Close()
		logs.Close()
		return err
	}
	r, err := raft.NewRaft(rc, n.fsm, cached, logs, snaps, trans)
	if err != nil {
		trans.Close()
		n.mux.Close()
		logs.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	logs.raft.Store(r)
	n.watchLeader(r)
	n.start = time.Now()
	if boot != nil {
		// Every founding member bootstraps the same configuration; raft
		// treats that as one cluster.
		if err := r.BootstrapCluster(*boot).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			// A failed Start releases what it took (raft, the peer port,
			// the data dir's lock) like its earlier error paths; Stop
			// after it stays harmless (each close is idempotent).
			_ = r.Shutdown().Error()
			n.mux.Close()
			logs.Close()
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	n.httpSrv = &http.Server{Handler: markPeer(n.stampAnswers(BodyReadTimeout(n.peerHandler(handler), 30*time.Second))), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	n.wg.Add(6)
	go func() { defer n.wg.Done(); _ = n.httpSrv.Serve(n.mux.httpL) }()
	go func() { defer n.wg.Done(); n.serveProposalStreams(n.mux.propL) }()
	go func() { defer n.wg.Done(); n.deliverNotices() }()
	go func() { defer n.wg.Done(); n.sendProposalsLoop() }()
	go func() { defer n.wg.Done(); n.leaderLoop() }()
	go func() { defer n.wg.Done(); n.publishLoop() }()
	return nil
}

// raftConfig is raft's configuration for member id from the node's Config.
func raftConfig(id string, cfg Config, hl hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.HeartbeatTimeout = cfg.ElectionTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	// A leader steps down when it heard from no quorum for a whole
	// election timeout, as etcd's CheckQuorum does; half of it made
	// leaders of guests that stall (QEMU without KVM) step down for
	// pauses etcd rides out. Reads never lean on the lease
	// (LinearizableRead confirms leadership with a heartbeat round).
	rc.LeaderLeaseTimeout = cfg.ElectionTimeout
	rc.CommitTimeout = cfg.HeartbeatInterval / 2
	rc.SnapshotThreshold = cfg.SnapshotCount
	rc.TrailingLogs = cfg.SnapshotCount
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.Logger = hl
	// Group concurrent proposals: one log append (one fsync) and one
	// AppendEntries per batch instead of per write.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 512
	return rc
}

// peerHTTPClient sends HTTP requests (forwarded client requests, reads
// of the leader's state) to other members over the peer port's mux.
func peerHTTPClient(m *peerMux) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return m.dial(ctx, addr, protoHTTP)
		},
		MaxIdleConnsPerHost: 64,
		// Beyond this, forwarded requests queue here rather than open
		// more connections to the leader's peer port.
		MaxConnsPerHost: 512,
		IdleConnTimeout: 30 * time.Second,
	}}
}

func (n *Node) bootConfiguration() (raft.Configuration, error) {
	var c raft.Configuration
	found := false
	for i, m := range n.cfg.InitialCluster {
		if len(m.PeerURLs) == 0 {
			return c, fmt.Errorf("--initial-cluster: member %q has no peer URL", m.Name)
		}
		addr, err := peerAddr(m.PeerURLs[0])
		if err != nil {
			return c, fmt.Errorf("--initial-cluster: %w", err)
		}
		id := MemberID(m.PeerURLs, n.cfg.Token)
		if m.Name == n.cfg.Name {
			if id != n.id {
				return c, fmt.Errorf("--initial-cluster gives %s the peer URLs %v but --initial-advertise-peer-urls says %v: make them match", m.Name, m.PeerURLs, n.cfg.PeerURLs)
			}
			found = true
		}
		s := raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(addr), Suffrage: raft.Voter}
		if i >= n.cfg.MaxVoters {
			s.Suffrage = raft.Nonvoter
		}
		c.Servers = append(c.Servers, s)
	}
	if !found {
		return c, fmt.Errorf("--initial-cluster has no member named %q: add %s=%s to it", n.cfg.Name, n.cfg.Name, n.cfg.PeerURLs[0])
	}
	return c, nil
}

// Stop shuts raft down and closes the data dir.
func (n *Node) Stop() error {
	select {
	case <-n.stop:
		return nil
	default:
	}
	close(n.stop)
	var err error
	if n.raft != nil {
		if n.raft.State() == raft.Leader {
			// Hand leadership over first, so a graceful stop (a rolling
			// update's reboot) costs no election timeout.
			done := make(chan error, 1)
			go func() { done <- n.raft.LeadershipTransfer().Error() }()
			select {
			case terr := <-done:
				if terr != nil {
					n.log.Warn("leadership transfer before stop", "err", terr)
				}
			case <-time.After(5 * time.Second):
			}
		}
		err = n.raft.Shutdown().Error()
	}
	if n.httpSrv != nil {
		n.httpSrv.Close()
	}
	if n.mux != nil {
		n.mux.Close()
	}
	n.wg.Wait()
	if n.logs != nil {
		if cerr := n.logs.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// RaftStatus is the applied index and current term (X-Raft-Index/-Term).
// The index is what this node's state machines applied, not raft's
// (which runs ahead of them).
func (n *Node) RaftStatus() (index, term uint64) {
	return n.fsm.applied.get(), n.raft.CurrentTerm()
}

// ClusterID is the cluster's ID once recorded, else derived from config.
func (n *Node) ClusterID() string {
	if id := n.members.clusterIDValue(); id != "" {
		return id
	}
	var ids []string
	for _, m := range n.cfg.InitialCluster {
		ids = append(ids, MemberID(m.PeerURLs, n.cfg.Token))
	}
	return ClusterID(ids, n.cfg.Token)
}

// Members lists the cluster's members.
func (n *Node) Members() []*Member { return n.members.list() }
