package kvcheck

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// session is what one client saw through the member it is pinned to: per
// key, the newest modified index it wrote or read there. A plain read on
// that member must be at least as new; after the client moves to another
// member (its member died or hung) it starts a new session.
type session struct {
	member int
	floor  map[string]uint64
}

func (s *session) saw(key string, idx uint64) { s.floor[key] = max(s.floor[key], idx) }

func (s *session) move(n int) {
	s.member = (s.member + 1) % n
	clear(s.floor)
}

// Load is a set of clients, each pinned to a member (spread over all of
// them, followers included) until a request to it fails: puts,
// compare-and-swaps and quorum gets on a few shared keys (recorded for
// porcupine), plain gets checked against the client's session, and puts
// of unique keys under AckedDir (recorded when acknowledged).
type Load struct {
	Client  *Client
	History *History
	Clients int
	// Keys are the shared registers (default /lin/a../lin/e); AckedDir
	// the directory of unique keys (default /acked).
	Keys     []string
	AckedDir string
	// Seed makes each run's choices differ (client cl uses Seed+cl).
	Seed int64
	// Name says where a client ran, for stale-read reports (default "member i").
	Name func(i int) string
	// Backoff is the pause after a request that got no answer (0: none;
	// a client of a cluster being switched off should not spin).
	Backoff time.Duration
}

// Run starts the clients; they stop when stop closes (wait on the result).
func (l *Load) Run(stop <-chan struct{}) *sync.WaitGroup {
	keys := l.Keys
	if len(keys) == 0 {
		keys = []string{"/lin/a", "/lin/b", "/lin/c", "/lin/d", "/lin/e"}
	}
	acked := l.AckedDir
	if acked == "" {
		acked = "/acked"
	}
	var wg sync.WaitGroup
	for cl := 0; cl < l.Clients; cl++ {
		wg.Add(1)
		w := &loadClient{
			l: l, h: l.History, c: l.Client, cl: cl, acked: acked, stop: stop,
			rng:      rand.New(rand.NewSource(l.Seed + int64(cl))),
			lastSeen: map[string]string{},
			ss:       &session{member: cl % l.Client.Members, floor: map[string]uint64{}},
		}
		go func() {
			defer wg.Done()
			w.run(keys)
		}()
	}
	return &wg
}

func (l *Load) name(i int) string {
	if l.Name == nil {
		return fmt.Sprintf("member %d", i)
	}
	return l.Name(i)
}

// loadClient is one client of a Load.
type loadClient struct {
	l        *Load
	h        *History
	c        *Client
	cl       int
	acked    string
	stop     <-chan struct{}
	rng      *rand.Rand
	lastSeen map[string]string // per key, the last value this client saw
	ss       *session
}

// run issues operations until stop closes: two in three on the shared
// keys (a compare-and-swap, put, quorum get or plain get), one in three a
// put of a unique key.
func (w *loadClient) run(keys []string) {
	for op := 0; ; op++ {
		select {
		case <-w.stop:
			return
		default:
		}
		ctx := context.Background()
		val := fmt.Sprintf("s%d-c%d-%d", w.l.Seed, w.cl, op)
		if op%3 == 2 {
			w.ackedPut(ctx, val)
			continue
		}
		key := keys[w.rng.Intn(len(keys))]
		if prev := w.lastSeen[key]; prev != "" && w.rng.Intn(3) == 0 {
			w.cas(ctx, key, val, prev)
		} else if w.rng.Intn(2) == 0 {
			w.put(ctx, key, val)
		} else if w.rng.Intn(2) == 0 {
			w.quorumGet(ctx, key)
		} else {
			w.plainGet(ctx, key)
		}
	}
}

// failed moves the client to the next member after a request got no
// answer, pausing Backoff first.
func (w *loadClient) failed() {
	w.ss.move(w.c.Members)
	if w.l.Backoff > 0 {
		select {
		case <-w.stop:
		case <-time.After(w.l.Backoff):
		}
	}
}

// cas is a compare-and-swap from the last value this client saw.
func (w *loadClient) cas(ctx context.Context, key, val, prev string) {
	call := w.h.now()
	st, r, err := w.c.Do(ctx, w.ss.member, http.MethodPut, key, url.Values{"value": {val}, "prevValue": {prev}})
	ret := w.h.now()
	if NotApplied(err, r) {
		w.h.outcome("cas not applied")
		if err != nil {
			w.failed()
		} else {
			time.Sleep(20 * time.Millisecond)
		}
		return
	}
	out := "?"
	switch {
	case st == 200:
		out = "ok"
		w.lastSeen[key] = val
		w.ss.saw(key, r.Node.ModifiedIndex)
	case r != nil && (r.ErrorCode == 101 || r.ErrorCode == 100):
		out = "fail"
	default:
		ret = Unknown
	}
	w.h.outcome("cas " + out)
	w.h.add(porcupine.Operation{ClientId: w.cl, Input: Input{CAS: true, Key: key, Value: val, Prev: prev}, Call: call, Output: out, Return: ret})
	if err != nil {
		w.failed()
	}
}

// put writes key.
func (w *loadClient) put(ctx context.Context, key, val string) {
	call := w.h.now()
	st, r, err := w.c.Do(ctx, w.ss.member, http.MethodPut, key, url.Values{"value": {val}})
	ret := w.h.now()
	if NotApplied(err, r) {
		w.h.outcome("put not applied")
		if err != nil {
			w.failed()
		} else {
			time.Sleep(20 * time.Millisecond) // no leader: do not spin
		}
		return
	}
	switch {
	case r != nil && r.ErrorCode != 0:
		cause := r.Cause
		if len(cause) > 60 {
			cause = cause[:60]
		}
		w.h.outcome(fmt.Sprintf("put %d %d %s", st, r.ErrorCode, cause))
	case err != nil:
		w.h.outcome("put no answer")
	default:
		w.h.outcome(fmt.Sprintf("put %d", st))
	}
	if st != 200 && st != 201 {
		ret = Unknown
	} else {
		w.lastSeen[key] = val
		w.ss.saw(key, r.Node.ModifiedIndex)
	}
	w.h.add(porcupine.Operation{ClientId: w.cl, Input: Input{Put: true, Key: key, Value: val}, Call: call, Output: "", Return: ret})
	if err != nil {
		w.failed()
	}
}

// quorumGet reads key through raft.
func (w *loadClient) quorumGet(ctx context.Context, key string) {
	call := w.h.now()
	st, r, err := w.c.Do(ctx, w.ss.member, http.MethodGet, key, url.Values{"quorum": {"true"}})
	ret := w.h.now()
	switch {
	case err == nil && st == 200 && r != nil:
		w.lastSeen[key] = r.Node.Value
		w.ss.saw(key, r.Node.ModifiedIndex)
		w.h.add(porcupine.Operation{ClientId: w.cl, Input: Input{Key: key}, Call: call, Output: r.Node.Value, Return: ret})
	case err == nil && st == 404 && r != nil && r.ErrorCode == 100:
		w.h.add(porcupine.Operation{ClientId: w.cl, Input: Input{Key: key}, Call: call, Output: "", Return: ret})
	case err != nil:
		w.failed()
	}
	// A read without an answer changes nothing: leave it out.
}

// plainGet reads key from the member's own state, checked against the
// client's session there.
func (w *loadClient) plainGet(ctx context.Context, key string) {
	st, r, err := w.c.Do(ctx, w.ss.member, http.MethodGet, key, nil)
	var got uint64
	switch {
	case err != nil:
		w.failed()
		return
	case st == 200 && r != nil:
		got = r.Node.ModifiedIndex
	case st == 404 && r != nil && r.ErrorCode == 100:
	default:
		return
	}
	w.h.outcome("plain get")
	if want := w.ss.floor[key]; got < want {
		w.h.mu.Lock()
		w.h.stale = append(w.h.stale, fmt.Sprintf("client %d on %s: %s at index %d, after it saw index %d there", w.cl, w.l.name(w.ss.member), key, got, want))
		w.h.mu.Unlock()
	}
	w.ss.saw(key, got)
}

// ackedPut puts a unique key and records it once acknowledged.
func (w *loadClient) ackedPut(ctx context.Context, val string) {
	key := w.acked + "/" + val
	st, _, err := w.c.Do(ctx, w.ss.member, http.MethodPut, key, url.Values{"value": {"x"}})
	if st == 200 || st == 201 {
		w.h.mu.Lock()
		w.h.acked = append(w.h.acked, key)
		w.h.mu.Unlock()
	}
	if err != nil {
		w.failed()
	}
}
