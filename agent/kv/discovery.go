package kv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pith-os/pith/atomicfile"
)

// DiscoveryPrefix is where discovery tokens live in the key space, as on
// discovery.etcd.io.
const DiscoveryPrefix = "/_etcd/registry"

// Discovery is an etcd-style discovery service: the plain keys API over an
// in-memory store, plus GET /new?size=N which creates a token and answers
// its URL. Members register under the token; nothing else is special.
type Discovery struct {
	server *Server
	local  *Local
	// PublicURL is the base URL tokens are handed out under.
	PublicURL string
	mux       *http.ServeMux
	lock      *os.File
}

// Close releases the state file for another process.
func (d *Discovery) Close() error {
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}

// NewDiscovery returns a discovery service announcing publicURL, with its
// tokens in memory only.
func NewDiscovery(publicURL string) *Discovery {
	d, _ := OpenDiscovery(publicURL, "")
	return d
}

// OpenDiscovery returns a discovery service whose tokens and registrations
// are kept in stateFile (read back at start, rewritten after each change),
// so a restart loses no cluster mid-bootstrap. stateFile "" keeps them in
// memory only.
func OpenDiscovery(publicURL, stateFile string) (*Discovery, error) {
	st := NewStore(Options{MaxWatchers: 10000})
	l := NewLocal(st)
	l.ID = "discovery"
	var lock *os.File
	if stateFile != "" {
		var err error
		if lock, err = lockDiscoveryState(stateFile); err != nil {
			return nil, err
		}
		idx, err := loadDiscoveryState(stateFile, st)
		if err != nil {
			lock.Close()
			return nil, err
		}
		l.index = idx
		l.AfterApply = func(index uint64) error { return saveDiscoveryState(stateFile, st, index) }
	}
	d := &Discovery{lock: lock, server: NewServer(st, l, Limits{MaxValueBytes: 64 << 10, MaxBodyBytes: 128 << 10}), local: l, PublicURL: strings.TrimRight(publicURL, "/")}
	d.mux = http.NewServeMux()
	d.mux.HandleFunc("/new", d.handleNew)
	d.mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"health":"true"}`)
	})
	return d, nil
}

// Run expires keys with TTLs until ctx ends.
func (d *Discovery) Run(ctx context.Context) { d.server.RunExpiry(ctx) }

func (d *Discovery) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == KeysPrefix || strings.HasPrefix(r.URL.Path, KeysPrefix+"/") {
		d.server.ServeHTTP(w, r)
		return
	}
	d.mux.ServeHTTP(w, r)
}

// NewToken creates a token for a cluster of size members and returns its URL.
func (d *Discovery) NewToken(size int) (string, error) {
	if size < 1 || size > 1000 {
		return "", fmt.Errorf("size %d: must be between 1 and 1000", size)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b[:])
	c := Command{Op: OpCreate, Path: DiscoveryPrefix + "/" + token + "/_config/size", Value: strconv.Itoa(size)}
	res, _, err := d.local.Propose(context.Background(), c.Marshal())
	if err != nil {
		return "", err
	}
	if r := res.(Result); r.Err != nil {
		return "", r.Err
	}
	return d.PublicURL + KeysPrefix + DiscoveryPrefix + "/" + token, nil
}

func (d *Discovery) handleNew(w http.ResponseWriter, r *http.Request) {
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
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintln(w, u)
}

// discoveryState is the discovery service's file: the store as Save writes
// it and the count of applied commands (the store's index only counts
// changes that succeeded).
type discoveryState struct {
	Version int             `json:"version"`
	Applied uint64          `json:"applied"`
	Store   json.RawMessage `json:"store"`
}

func loadDiscoveryState(path string, st *Store) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("discovery state: %w", err)
	}
	var ds discoveryState
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

// saveDiscoveryState replaces path atomically: a crash leaves the old or
// the new state, never a mix.
func saveDiscoveryState(path string, st *Store, applied uint64) error {
	var buf bytes.Buffer
	if err := st.Save(&buf); err != nil {
		return err
	}
	b, err := json.Marshal(discoveryState{Version: 1, Applied: applied, Store: bytes.TrimSpace(buf.Bytes())})
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

// lockDiscoveryState takes path+".lock": two services writing one state
// file would each overwrite the other's tokens.
func lockDiscoveryState(path string) (*os.File, error) {
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
