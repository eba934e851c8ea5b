package kv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
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
}

// NewDiscovery returns a discovery service announcing publicURL.
func NewDiscovery(publicURL string) *Discovery {
	st := NewStore(Options{MaxWatchers: 10000})
	l := NewLocal(st)
	l.ID = "discovery"
	d := &Discovery{server: NewServer(st, l, Limits{MaxValueBytes: 64 << 10, MaxBodyBytes: 128 << 10}), local: l, PublicURL: strings.TrimRight(publicURL, "/")}
	d.mux = http.NewServeMux()
	d.mux.HandleFunc("/new", d.handleNew)
	d.mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"health":"true"}`)
	})
	return d
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
