package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
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
	mux       *peerMux
	logs      *logStore
	httpSrv   *http.Server
	fwd       *http.Client
	log       *slog.Logger
	start     time.Time

	leaderHooks []func(context.Context)
	// readyTerm is the term in which this leader's barrier completed: from
	// then on its state machines hold every committed entry.
	readyTerm atomic.Uint64
	// termStart is the log index from which entries are of readyTerm.
	termStart atomic.Uint64
	stats     leaderStats
	stop      chan struct{}
	wg        sync.WaitGroup
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
	n := &Node{cfg: cfg, id: MemberID(cfg.PeerURLs, cfg.Token), fsm: newFSM(), members: newMembership(), log: cfg.Log, stop: make(chan struct{}), proposals: make(chan *proposal, 4*maxProposalBatch)}
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
	logs, err := openLogStore(cfg.DataDir, n.log.Info)
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
	trans := timedTransport{NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: raftStream{m: n.mux, advertise: advertisedAddr(adv)}, MaxPool: 4, Timeout: 10 * time.Second, Logger: hl}),
		stats: &n.stats, durable: logs.sync.durableIndex, acked: n.notices.acked, sent: n.notices.sent}
	n.trans = trans
	n.notices.mu.Lock()
	n.notices.start = func(id raft.ServerID, p *noticePeer) {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.sendNotices(id, p) }()
	}
	n.notices.mu.Unlock()
	n.fwd = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return n.mux.dial(ctx, addr, protoHTTP)
		},
		MaxIdleConnsPerHost: 64,
		// Beyond this, forwarded requests queue here rather than open
		// more connections to the leader's peer port.
		MaxConnsPerHost: 512,
		IdleConnTimeout: 30 * time.Second,
	}}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.id)
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

	existing, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		n.mux.Close()
		logs.Close()
		return err
	}
	var boot *raft.Configuration
	if !existing && cfg.InitialClusterState == "new" {
		c, err := n.bootConfiguration()
		if err != nil {
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
		n.mux.Close()
		logs.Close()
		return err
	}
	r, err := raft.NewRaft(rc, n.fsm, cached, logs, snaps, trans)
	if err != nil {
		n.mux.Close()
		logs.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	logs.raft.Store(r)
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
	n.wg.Add(4)
	go func() { defer n.wg.Done(); _ = n.httpSrv.Serve(n.mux.httpL) }()
	go func() { defer n.wg.Done(); n.sendProposalsLoop() }()
	go func() { defer n.wg.Done(); n.leaderLoop() }()
	go func() { defer n.wg.Done(); n.publishLoop() }()
	return nil
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

// leaderLoop runs the leader's duties for as long as it leads.
func (n *Node) leaderLoop() {
	stopLead := context.CancelFunc(func() {})
	defer func() { stopLead() }()
	for {
		select {
		case <-n.stop:
			return
		case isLeader := <-n.raft.LeaderCh():
			stopLead()
			n.readyTerm.Store(0)
			if isLeader {
				ctx, cancel := context.WithCancel(context.Background())
				stopLead = cancel
				go n.lead(ctx)
			}
		}
	}
}

func (n *Node) lead(ctx context.Context) {
	term := n.raft.CurrentTerm()
	// The barrier makes this leader apply every entry committed by earlier
	// leaders before it serves linearizable reads or acts on state.
	for {
		if err := n.raft.Barrier(n.cfg.ElectionTimeout * 5).Error(); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(n.cfg.HeartbeatInterval):
		}
	}
	// The barrier is this term's entry: every entry from it on is too.
	n.termStart.Store(n.raft.LastIndex())
	n.readyTerm.Store(term)
	if n.members.clusterIDValue() == "" {
		var ids []string
		var ms []*Member
		for _, m := range n.cfg.InitialCluster {
			id := MemberID(m.PeerURLs, n.cfg.Token)
			ids = append(ids, id)
			ms = append(ms, &Member{ID: id, Name: m.Name, PeerURLs: m.PeerURLs})
		}
		b, _ := json.Marshal(memberCmd{Op: "init", ClusterID: ClusterID(ids, n.cfg.Token), Token: n.cfg.Token, Members: ms})
		if _, _, err := n.Propose(ctx, NamespaceMembers, b); err != nil {
			n.log.Warn("record initial members", "err", err)
		}
	}
	for _, h := range n.leaderHooks {
		go h(ctx)
	}
	n.balanceVoters(ctx)
}

// balanceVoters keeps up to MaxVoters voters by promoting non-voters when a
// voter was removed.
func (n *Node) balanceVoters(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f := n.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		voters := 0
		var non []raft.Server
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters++
			} else {
				non = append(non, s)
			}
		}
		if voters < n.cfg.MaxVoters && len(non) > 0 {
			sort.Slice(non, func(i, j int) bool { return non[i].ID < non[j].ID })
			s := non[0]
			if err := n.raft.AddVoter(s.ID, s.Address, f.Index(), 5*time.Second).Error(); err != nil {
				n.log.Warn("promote non-voter", "id", s.ID, "err", err)
			} else {
				n.log.Info("promoted non-voter", "id", s.ID)
			}
		}
	}
}

// publishLoop records this node's name and client URLs in the members
// namespace (through the leader) until they are there.
func (n *Node) publishLoop() {
	for {
		if m := n.members.get(n.id); m != nil && m.Name == n.cfg.Name && equalStrings(m.ClientURLs, n.cfg.ClientURLs) {
			return
		}
		if n.members.get(n.id) != nil {
			if err := n.publish(); err != nil {
				n.log.Debug("publish member attributes", "err", err)
			}
		}
		select {
		case <-n.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (n *Node) publish() error {
	b, _ := json.Marshal(memberCmd{Op: "publish", Members: []*Member{{ID: n.id, Name: n.cfg.Name, ClientURLs: n.cfg.ClientURLs}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := n.ProposeAnywhere(ctx, NamespaceMembers, b)
	return err
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Propose appends a command for namespace ns and waits until this node
// applied it. Only the leader can propose (ErrNotLeader otherwise).
func (n *Node) Propose(ctx context.Context, ns Namespace, cmd []byte) (any, uint64, error) {
	if n.raft.State() != raft.Leader {
		return nil, 0, ErrNotLeader
	}
	data := make([]byte, 1+len(cmd))
	data[0] = byte(ns)
	copy(data[1:], cmd)
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return nil, 0, ErrNotLeader
		}
		return nil, 0, err
	}
	// Committed means fsynced on a quorum counting this leader, whose own
	// fsync runs beside replication: wait for it before acknowledging.
	if err := n.logs.sync.waitDurable(f.Index(), n.stop); err != nil {
		return nil, 0, err
	}
	return f.Response(), f.Index(), nil
}

// ProposeAnywhere proposes on the leader, through it when this node
// follows (forward.go): either way it returns this node's own result once
// this node applied the entry. A leader of an earlier release takes the
// membership's commands one by one (their result is not returned), and
// no others (ErrLeaderTooOld).
func (n *Node) ProposeAnywhere(ctx context.Context, ns Namespace, cmd []byte) (any, uint64, error) {
	res, idx, err := n.Propose(ctx, ns, cmd)
	if !errors.Is(err, ErrNotLeader) {
		return res, idx, err
	}
	res, idx, err = n.proposeThroughLeader(ctx, ns, cmd)
	if errors.Is(err, ErrLeaderTooOld) && ns == NamespaceMembers {
		return nil, 0, n.proposeOne(ctx, ns, cmd)
	}
	return res, idx, err
}

// proposeOne is how earlier releases forwarded a membership command.
func (n *Node) proposeOne(ctx context.Context, ns Namespace, cmd []byte) error {
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return ErrNoLeader
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+string(addr)+"/pith/cluster/propose", bytes.NewReader(append([]byte{byte(ns)}, cmd...)))
	if err != nil {
		return err
	}
	req.Header.Set(ForwardedHeader, n.id)
	resp, err := n.fwd.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("leader: %s", bytes.TrimSpace(body))
	}
	return n.awaitAnswer(ctx, resp.Header)
}

// IsLeader reports whether this node leads now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's member ID, or "".
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// LinearizableRead returns once local state machines reflect every write
// acknowledged before the call; only on the leader (ErrNotLeader).
func (n *Node) LinearizableRead(ctx context.Context) error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	for n.readyTerm.Load() != n.raft.CurrentTerm() {
		select {
		case <-ctx.Done():
			return ErrNoLeader
		case <-time.After(10 * time.Millisecond):
		}
		if n.raft.State() != raft.Leader {
			return ErrNotLeader
		}
	}
	// Confirms no newer leader exists: then every acknowledged write was
	// applied here (a leader applies before it acknowledges).
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return ErrNotLeader
	}
	// Serve only state whose entries are on this leader's disk too.
	return n.logs.sync.waitDurable(n.raft.AppliedIndex(), n.stop)
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
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return ErrNoLeader
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+string(addr)+r.URL.RequestURI(), bytes.NewReader(body))
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
		return err
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
