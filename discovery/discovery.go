package discovery

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pith-os/pith/agent/kv"
	"github.com/pith-os/pith/atomicfile"
)

// RegistryPrefix is where discovery tokens live in the key space, as on
// discovery.etcd.io.
const RegistryPrefix = "/_etcd/registry"

// Service is an etcd-style discovery service: GET /new?size=N creates a
// token and answers its URL; members register under the token and read each
// other's registrations with the etcd v2 keys API. Only that much of the
// keys API is served (see access.go): the token is the only
// credential, so a caller reads and writes only below the token it names,
// registrations are create-only, and tokens expire.
type Service struct {
	server *kv.Server
	store  *kv.Store
	local  *kv.Local
	opt    Options
	// PublicURL is the base URL tokens are handed out under.
	PublicURL string
	lock      *os.File
	// mu serialises every change (token creation, registration, expiry):
	// the checks before a change (token exists, limits) hold until it is
	// applied.
	mu sync.Mutex
}

// Options bound what the service keeps and who may mint tokens.
// Zero fields take the defaults below.
type Options struct {
	// StateFile keeps tokens and registrations across restarts ("" keeps
	// them in memory only).
	StateFile string
	// TokenTTL is how long a token and its registrations live (default
	// 7 days: a cluster bootstraps in minutes, and nodes added later
	// with the same user-data have a week to join).
	TokenTTL time.Duration
	// MaxTokens bounds live tokens (default 1024).
	MaxTokens int
	// MaxRegistrations bounds registrations under one token, and so the
	// largest size a token may ask for (default 128).
	MaxRegistrations int
	// NewFrom lists the networks allowed to create tokens (default
	// loopback only: minting tokens is the operator's act, nodes only
	// register and read).
	NewFrom []netip.Prefix
	// HeaderTimeout bounds how long a client may take to send its request
	// headers and body (default 10 s; slow senders are cut off).
	HeaderTimeout time.Duration
	// MaxConns bounds open connections (default 1024): more wait in the
	// kernel's accept queue.
	MaxConns int
}

// DefaultTokenTTL is how long a discovery token lives by default.
const DefaultTokenTTL = 7 * 24 * time.Hour

func (o Options) withDefaults() Options {
	if o.TokenTTL <= 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 1024
	}
	if o.MaxRegistrations <= 0 {
		o.MaxRegistrations = 128
	}
	if o.NewFrom == nil {
		o.NewFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = 10 * time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 1024
	}
	return o
}

// limits bound one request: a registration is a member name and
// a few peer URLs, far below these.
var limits = kv.Limits{MaxBodyBytes: 4 << 10, MaxValueBytes: 1 << 10, MaxKeyBytes: 256, WatchTimeout: time.Minute}

// Close releases the state file for another process.
func (d *Service) Close() error {
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}

// New returns a discovery service announcing publicURL, with its tokens
// in memory only and the default limits.
func New(publicURL string) *Service {
	d, _ := Open(publicURL, Options{})
	return d
}

// Open returns a discovery service announcing publicURL. With
// opt.StateFile its tokens and registrations are read back at start and
// the file rewritten after each change, so a restart loses no cluster
// mid-bootstrap.
func Open(publicURL string, opt Options) (*Service, error) {
	opt = opt.withDefaults()
	st := kv.NewStore(kv.Options{MaxWatchers: opt.MaxConns})
	l := kv.NewLocal(st)
	l.ID = "discovery"
	d := &Service{store: st, local: l, opt: opt, PublicURL: strings.TrimRight(publicURL, "/")}
	// The keys API only proposes expiry; it goes through d.mu like every
	// other change.
	d.server = kv.NewServer(st, lockedLocal{d}, limits)
	if opt.StateFile != "" {
		var err error
		if d.lock, err = lockState(opt.StateFile); err != nil {
			return nil, err
		}
		idx, err := loadState(opt.StateFile, st)
		if err != nil {
			d.Close()
			return nil, err
		}
		l.SetIndex(idx)
		l.AfterApply = func(index uint64) error { return saveState(opt.StateFile, st, index) }
		if err := d.expireOldTokens(); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// lockedLocal is the Raft the keys API sees: proposals under d.mu.
type lockedLocal struct{ d *Service }

func (l lockedLocal) Propose(ctx context.Context, cmd []byte) (any, uint64, error) {
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	return l.d.local.Propose(ctx, cmd)
}
func (l lockedLocal) IsLeader() bool                             { return true }
func (l lockedLocal) LinearizableRead(ctx context.Context) error { return nil }
func (l lockedLocal) Forward(w http.ResponseWriter, r *http.Request, b []byte) error {
	return l.d.local.Forward(w, r, b)
}
func (l lockedLocal) RaftStatus() (uint64, uint64) { return l.d.local.RaftStatus() }
func (l lockedLocal) ClusterID() string            { return l.d.local.ClusterID() }

// propose applies c; the caller holds d.mu.
func (d *Service) propose(c kv.Command) (*kv.Event, uint64, error) {
	res, idx, err := d.local.Propose(context.Background(), c.Marshal())
	if err != nil {
		return nil, 0, err
	}
	r := res.(kv.Result)
	return r.Event, idx, r.Err
}

// expireOldTokens gives tokens from a state file written before tokens
// expired the TTL from now, instead of keeping them forever.
func (d *Service) expireOldTokens() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	ev, err := d.store.Get(RegistryPrefix, false, false)
	if err != nil {
		return nil // no tokens yet
	}
	expire := time.Now().Add(d.opt.TokenTTL).UnixNano()
	for _, n := range ev.Node.Nodes {
		if n.Dir && n.Expiration == nil {
			if _, _, err := d.propose(kv.Command{Op: kv.OpUpdate, Path: n.Key, Expire: expire}); err != nil {
				return fmt.Errorf("discovery: give token %s an expiry: %w", n.Key, err)
			}
		}
	}
	return nil
}

// Run expires tokens whose TTL passed until ctx ends.
func (d *Service) Run(ctx context.Context) { d.server.RunExpiry(ctx) }

// errTooManyTokens answers /new when MaxTokens are live.
var errTooManyTokens = errors.New("too many live discovery tokens: retry once some expire, or raise --max-tokens")

// NewToken creates a token for a cluster of size members and returns its
// URL. The token is 128 random bits: knowing it is the only credential.
func (d *Service) NewToken(size int) (string, error) {
	if size < 1 || size > d.opt.MaxRegistrations {
		return "", fmt.Errorf("size %d: must be between 1 and %d (--max-registrations)", size, d.opt.MaxRegistrations)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b[:])
	dir := RegistryPrefix + "/" + token
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.countChildren(RegistryPrefix) >= d.opt.MaxTokens {
		return "", errTooManyTokens
	}
	// The directory carries the TTL: when it expires its registrations go
	// with it.
	expire := time.Now().Add(d.opt.TokenTTL).UnixNano()
	if _, _, err := d.propose(kv.Command{Op: kv.OpCreate, Path: dir, Dir: true, Expire: expire}); err != nil {
		return "", err
	}
	if _, _, err := d.propose(kv.Command{Op: kv.OpCreate, Path: dir + "/_config/size", Value: strconv.Itoa(size)}); err != nil {
		_, _, _ = d.propose(kv.Command{Op: kv.OpDelete, Path: dir, Dir: true, Recursive: true})
		return "", err
	}
	return d.PublicURL + kv.KeysPrefix + dir, nil
}

// countChildren counts the visible entries of directory p (0 if absent).
func (d *Service) countChildren(p string) int {
	ev, err := d.store.Get(p, false, false)
	if err != nil || ev.Node == nil {
		return 0
	}
	return len(ev.Node.Nodes)
}

func (d *Service) handleNew(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "use GET /new?size=N", http.StatusMethodNotAllowed)
		return
	}
	if !d.mayCreate(r.RemoteAddr) {
		http.Error(w, "discovery: tokens are created only from "+prefixList(d.opt.NewFrom)+" (pith discovery serve --new-from)", http.StatusForbidden)
		return
	}
	size := 3
	if s := r.URL.Query().Get("size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			http.Error(w, "size must be a number", http.StatusBadRequest)
			return
		}
		size = n
	}
	u, err := d.NewToken(size)
	switch {
	case errors.Is(err, errTooManyTokens):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintln(w, u)
}

func (d *Service) mayCreate(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	for _, p := range d.opt.NewFrom {
		if p.Contains(ap.Addr().Unmap()) {
			return true
		}
	}
	return false
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// stateFile is the discovery service's file: the store as Save writes
// it and the count of applied commands (the store's index only counts
// changes that succeeded).
type stateFile struct {
	Version int             `json:"version"`
	Applied uint64          `json:"applied"`
	Store   json.RawMessage `json:"store"`
}

func loadState(path string, st *kv.Store) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("discovery state: %w", err)
	}
	var ds stateFile
	if err := json.Unmarshal(b, &ds); err != nil {
		return 0, fmt.Errorf("discovery state %s is not valid JSON (%v): move it aside to start with no tokens", path, err)
	}
	if ds.Version != 1 {
		return 0, fmt.Errorf("discovery state %s has version %d, this pith reads 1: use a matching pith or move the file aside", path, ds.Version)
	}
	if err := st.Restore(bytes.NewReader(ds.Store)); err != nil {
		return 0, fmt.Errorf("discovery state %s: %w: move it aside to start with no tokens", path, err)
	}
	return ds.Applied, nil
}

// saveState replaces path atomically: a crash leaves the old or
// the new state, never a mix.
func saveState(path string, st *kv.Store, applied uint64) error {
	var buf bytes.Buffer
	if err := st.Save(&buf); err != nil {
		return err
	}
	b, err := json.Marshal(stateFile{Version: 1, Applied: applied, Store: bytes.TrimSpace(buf.Bytes())})
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("discovery state: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("discovery state %s: %w", path, err)
	}
	return nil
}

// lockState takes path+".lock": two services writing one state
// file would each overwrite the other's tokens.
func lockState(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("discovery state: %w", err)
	}
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("discovery state: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("discovery state %s is in use by another pith discovery serve: stop it or give this one its own --state", path)
		}
		return nil, fmt.Errorf("lock discovery state %s: %w", path, err)
	}
	return f, nil
}
