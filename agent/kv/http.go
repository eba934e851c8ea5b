package kv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Raft is what the keys API needs from the replicated log. cluster.Node
// provides it (through a small adapter in cmd/pithd); Local is the
// single-process form.
type Raft interface {
	// Propose replicates an encoded Command (through the leader when this
	// member follows) and returns the store's Result once applied here,
	// with the raft index of the entry: a client that stays on one member
	// reads its own writes. ErrForward: the command did not reach the
	// log; Forward the request instead.
	Propose(ctx context.Context, cmd []byte) (any, uint64, error)
	IsLeader() bool
	// LinearizableRead returns once local state reflects every write
	// acknowledged before the call (leader only).
	LinearizableRead(ctx context.Context) error
	// Forward relays the request (with its already-read body) to the
	// leader (quorum reads), answering once applied here as far as the
	// leader's answer reflects.
	Forward(w http.ResponseWriter, r *http.Request, body []byte) error
	RaftStatus() (index, term uint64)
	ClusterID() string
}

// ErrForward is Propose's answer when the leader takes no commands from
// followers (an earlier release, during a rolling update).
var ErrForward = errors.New("kv: forward the request to the leader")

// Server serves the etcd v2 keys API over a Store.
type Server struct {
	store *Store
	raft  Raft
	lim   Limits
	now   func() time.Time
}

// NewServer returns the keys API for store, replicated through r.
func NewServer(store *Store, r Raft, lim Limits) *Server {
	return &Server{store: store, raft: r, lim: lim.withDefaults(), now: time.Now}
}

// Store returns the served store.
func (s *Server) Store() *Store { return s.store }

// SetClock replaces the clock RunExpiry and new TTLs read (tests expire
// keys with it instead of waiting).
func (s *Server) SetClock(now func() time.Time) { s.now = now }

// RegisterHTTP adds /v2/keys and /v2/stats/store to mux. Note that
// http.ServeMux redirects paths with "." or ".." segments; route
// KeysPrefix straight to s (see Handler) to answer those with an error.
func (s *Server) RegisterHTTP(mux *http.ServeMux) {
	mux.Handle(KeysPrefix, s)
	mux.Handle(KeysPrefix+"/", s)
	mux.HandleFunc("/v2/stats/store", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.store.Stats())
	})
}

// WriteError answers err in etcd's error shape: an *Error as it is,
// anything else as a raft-internal error.
func (s *Server) WriteError(w http.ResponseWriter, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, ErrTooManyWatchers):
		e = NewError(EcodeRaftInternal, "too many watchers on this member; retry later or use another member", s.store.Index())
		w.Header().Set("X-Etcd-Index", strconv.FormatUint(e.Index, 10))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		b, _ := json.Marshal(e)
		_, _ = w.Write(append(b, '\n'))
		return
	default:
		e = NewError(EcodeRaftInternal, err.Error(), 0)
	}
	e.WriteTo(w)
}

// ServeHTTP serves /v2/keys/...
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case "GET", "HEAD", "PUT", "POST", "DELETE":
	default:
		w.Header().Set("Allow", "GET,HEAD,PUT,POST,DELETE")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("X-Etcd-Cluster-ID", s.raft.ClusterID())
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.lim.MaxBodyBytes))
	if err != nil {
		msg := "reading the request body: " + err.Error()
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			msg = "request body over the limit of " + strconv.FormatInt(s.lim.MaxBodyBytes, 10) + " bytes"
		}
		s.WriteError(w, reqErr(EcodeInvalidForm, msg))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := r.ParseForm(); err != nil {
		s.WriteError(w, reqErr(EcodeInvalidForm, err.Error()))
		return
	}
	rr, perr := ParseKeyRequest(r.Method, r.URL.Path, r.Form, s.lim)
	if perr != nil {
		s.WriteError(w, perr)
		return
	}
	switch r.Method {
	case "GET", "HEAD":
		switch {
		case rr.Wait:
			s.serveWatch(w, r, rr)
		case rr.Quorum:
			s.serveQuorumGet(w, r, rr, body)
		default:
			s.serveGet(w, rr)
		}
	default:
		s.serveWrite(w, r, rr, body)
	}
}

func (s *Server) serveGet(w http.ResponseWriter, rr *Request) {
	ev, err := s.store.Get(rr.Path, rr.Recursive, rr.Sorted)
	if err != nil {
		s.WriteError(w, err)
		return
	}
	idx, term := s.raft.RaftStatus()
	s.WriteEvent(w, ev, idx, term, false)
}

func (s *Server) serveQuorumGet(w http.ResponseWriter, r *http.Request, rr *Request, body []byte) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if s.raft.IsLeader() {
		if err := s.raft.LinearizableRead(ctx); err == nil {
			s.serveGet(w, rr)
			return
		}
	}
	if err := s.raft.Forward(w, r, body); err != nil {
		s.WriteError(w, err)
	}
}

func (s *Server) serveWrite(w http.ResponseWriter, r *http.Request, rr *Request, body []byte) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	res, idx, err := s.raft.Propose(ctx, rr.Command(s.now()).Marshal())
	if errors.Is(err, ErrForward) {
		err = s.raft.Forward(w, r, body)
		if err != nil {
			s.WriteError(w, err)
		}
		return
	}
	if err != nil {
		s.WriteError(w, err)
		return
	}
	result, ok := res.(Result)
	if !ok {
		if e, isErr := res.(error); isErr {
			s.WriteError(w, e)
		} else {
			s.WriteError(w, errors.New("unexpected apply result"))
		}
		return
	}
	if result.Err != nil {
		s.WriteError(w, result.Err)
		return
	}
	_, term := s.raft.RaftStatus()
	s.WriteEvent(w, result.Event, idx, term, rr.NoValueOnSuccess)
}

// WriteEvent answers a write's event with etcd's headers (201 when it
// created the key); noValue leaves the node out, as noValueOnSuccess asks.
func (s *Server) WriteEvent(w http.ResponseWriter, ev *Event, raftIndex, term uint64, noValue bool) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Etcd-Index", strconv.FormatUint(ev.EtcdIndex, 10))
	h.Set("X-Raft-Index", strconv.FormatUint(raftIndex, 10))
	h.Set("X-Raft-Term", strconv.FormatUint(term, 10))
	if ev.IsCreated() {
		w.WriteHeader(http.StatusCreated)
	}
	if noValue {
		switch ev.Action {
		case ActionSet, ActionCompareAndSwap, ActionCreate, ActionUpdate:
			ev = &Event{Action: ev.Action}
		}
	}
	_ = json.NewEncoder(w).Encode(ev)
}

func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, rr *Request) {
	wa, err := s.store.Watch(rr.Path, rr.Recursive, rr.Stream, rr.WaitIndex)
	if err != nil {
		s.WriteError(w, err)
		return
	}
	defer wa.Remove()
	idx, term := s.raft.RaftStatus()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Etcd-Index", strconv.FormatUint(wa.StartIndex(), 10))
	h.Set("X-Raft-Index", strconv.FormatUint(idx, 10))
	h.Set("X-Raft-Term", strconv.FormatUint(term, 10))
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		// Headers now, so a long-polling client knows it is registered.
		fl.Flush()
	}
	timer := time.NewTimer(s.lim.WatchTimeout)
	defer timer.Stop()
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-timer.C:
			return
		case ev, ok := <-wa.EventChan():
			if !ok {
				// Dropped (too slow, or the store was restored): ending the
				// response tells the client to watch again.
				return
			}
			if err := enc.Encode(ev); err != nil || !rr.Stream {
				return
			}
			// Write whatever else is queued before flushing: one network
			// write per burst instead of one per event.
			for more := true; more; {
				select {
				case ev, ok := <-wa.EventChan():
					if !ok {
						if fl != nil {
							fl.Flush()
						}
						return
					}
					if err := enc.Encode(ev); err != nil {
						return
					}
				default:
					more = false
				}
			}
			if fl != nil {
				fl.Flush()
			}
		}
	}
}

// RunExpiry proposes expire commands while ctx lives (run it on the
// leader only): keys whose TTL passed are deleted at the same index on
// every replica.
func (s *Server) RunExpiry(ctx context.Context) {
	const maxWait = 500 * time.Millisecond
	for {
		wait := maxWait
		if next := s.store.NextExpiry(); next != 0 {
			now := s.now()
			if next <= now.UnixNano() {
				c := Command{Op: OpExpire, Expire: now.UnixNano()}
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, _, err := s.raft.Propose(pctx, c.Marshal())
				cancel()
				if err != nil {
					wait = 100 * time.Millisecond
				} else {
					continue
				}
			} else if d := time.Duration(next - now.UnixNano()); d < wait {
				wait = d
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Local runs a store without replication: one process, always leader.
// It serves tests and the discovery service, which makes it durable with
// AfterApply.
type Local struct {
	mu    sync.Mutex
	store *Store
	index uint64
	ID    string
	// AfterApply, when set, runs after each command (in order, before the
	// proposer gets its answer); an error fails the proposal.
	AfterApply func(index uint64) error
}

// NewLocal returns a Raft that applies directly to store.
func NewLocal(store *Store) *Local { return &Local{store: store, ID: "1"} }

// SetIndex continues counting applied commands from index, for a store
// restored from a file written after index commands.
func (l *Local) SetIndex(index uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.index = index
}

// Propose applies cmd at once.
func (l *Local) Propose(_ context.Context, cmd []byte) (any, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.index++
	res := l.store.Apply(l.index, cmd)
	if l.AfterApply != nil {
		if err := l.AfterApply(l.index); err != nil {
			return nil, 0, err
		}
	}
	return res, l.index, nil
}

// IsLeader is always true.
func (l *Local) IsLeader() bool { return true }

// LinearizableRead is immediate: there is one copy.
func (l *Local) LinearizableRead(context.Context) error { return nil }

// Forward is never needed.
func (l *Local) Forward(http.ResponseWriter, *http.Request, []byte) error {
	return errors.New("local store has no leader to forward to")
}

// RaftStatus is the number of applied commands and term 1.
func (l *Local) RaftStatus() (uint64, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.index, 1
}

// ClusterID names the single-process store.
func (l *Local) ClusterID() string { return l.ID }
