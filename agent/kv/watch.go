package kv

import (
	"fmt"
	"path"
	"strings"
	"sync"
	"sync/atomic"
)

// watcherChanSize is the per-watcher buffer; a watcher that falls this far
// behind is dropped (its channel closed) rather than stalling the store.
const watcherChanSize = 100

// Watcher delivers events to one client.
type Watcher struct {
	c          chan *Event
	recursive  bool
	stream     bool
	sinceIndex uint64
	startIndex uint64
	key        string
	hub        *watcherHub
	removed    bool // guarded by hub.mu
}

// EventChan yields events; it is closed when the watcher is removed.
func (w *Watcher) EventChan() <-chan *Event { return w.c }

// StartIndex is the store index when the watch began (X-Etcd-Index).
func (w *Watcher) StartIndex() uint64 { return w.startIndex }

// Remove unregisters the watcher; safe to call more than once.
func (w *Watcher) Remove() {
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	w.hub.removeLocked(w)
}

type watcherHub struct {
	mu       sync.Mutex
	watchers map[string]map[*Watcher]struct{}
	count    atomic.Int64
	max      int
	history  *eventHistory
}

func newWatcherHub(historySize, maxWatchers int) *watcherHub {
	return &watcherHub{watchers: map[string]map[*Watcher]struct{}{}, max: maxWatchers, history: newEventHistory(historySize)}
}

// ErrTooManyWatchers is returned when the watcher bound is reached.
var ErrTooManyWatchers = fmt.Errorf("too many watchers")

func (h *watcherHub) watch(key string, recursive, stream bool, since, storeIndex uint64) (*Watcher, error) {
	ev, err := h.history.scan(key, recursive, since)
	if err != nil {
		err.Index = storeIndex
		return nil, err
	}
	w := &Watcher{c: make(chan *Event, watcherChanSize), recursive: recursive, stream: stream, sinceIndex: since, startIndex: storeIndex, key: key, hub: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ev != nil {
		ne := *ev
		ne.EtcdIndex = storeIndex
		w.c <- &ne
		if !stream {
			w.removed = true
			close(w.c)
			return w, nil
		}
		// A stream goes on through the history: every later match up to
		// now, not only the first, or its client silently misses them.
		// More than the buffer holds ends the stream (as a slow reader's
		// does); the client watches again from the last index it got.
		for next := ev.Index() + 1; ; {
			e, _ := h.history.scan(key, recursive, next)
			if e == nil {
				break
			}
			if len(w.c) == cap(w.c) {
				w.removed = true
				close(w.c)
				return w, nil
			}
			ce := *e
			ce.EtcdIndex = storeIndex
			w.c <- &ce
			next = e.Index() + 1
		}
	}
	if h.max > 0 && h.count.Load() >= int64(h.max) {
		return nil, ErrTooManyWatchers
	}
	m := h.watchers[key]
	if m == nil {
		m = map[*Watcher]struct{}{}
		h.watchers[key] = m
	}
	m[w] = struct{}{}
	h.count.Add(1)
	return w, nil
}

func (h *watcherHub) removeLocked(w *Watcher) {
	if w.removed {
		return
	}
	w.removed = true
	close(w.c)
	if m := h.watchers[w.key]; m != nil {
		delete(m, w)
		if len(m) == 0 {
			delete(h.watchers, w.key)
		}
	}
	h.count.Add(-1)
}

// notify records e and delivers it to watchers of its key, of each
// ancestor (recursive ones), and, when a directory went away, of every
// key below it.
func (h *watcherHub) notify(e *Event) {
	h.history.add(e)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.watchers) == 0 {
		return
	}
	key := e.Node.Key
	if key == "" {
		key = "/"
	}
	curr := "/"
	h.notifyAt(e, curr, key, false)
	for _, seg := range splitPath(key) {
		curr = path.Join(curr, seg)
		h.notifyAt(e, curr, key, false)
	}
	if (e.Action == ActionDelete || e.Action == ActionExpire) && e.Node.Dir {
		prefix := key + "/"
		for wk := range h.watchers {
			if strings.HasPrefix(wk, prefix) {
				h.notifyAt(e, wk, key, true)
			}
		}
	}
}

func (h *watcherHub) notifyAt(e *Event, watchPath, key string, deleted bool) {
	m := h.watchers[watchPath]
	if len(m) == 0 {
		return
	}
	original := key == watchPath
	if !original && !deleted && isHidden(watchPath, key) {
		return
	}
	for w := range m {
		if !(w.recursive || original || deleted) || e.Index() < w.sinceIndex {
			continue
		}
		select {
		case w.c <- e:
			if !w.stream {
				h.removeLocked(w)
			}
		default:
			// Too slow a reader: drop it rather than block the store.
			h.removeLocked(w)
		}
	}
}

// isHidden reports whether key is hidden from a watcher at watchPath: its
// last element, or a directory between the two, starts with '_'.
func isHidden(watchPath, key string) bool {
	if len(watchPath) > len(key) {
		return false
	}
	after := path.Clean("/" + key[len(watchPath):])
	return strings.Contains(after, "/_")
}

// eventHistory is a ring of the last events, one per index, so a watch
// with waitIndex finds the first matching event since that index.
type eventHistory struct {
	events     []*Event
	front, n   int
	startIndex uint64
	lastIndex  uint64
}

func newEventHistory(capacity int) *eventHistory {
	return &eventHistory{events: make([]*Event, capacity)}
}

func (h *eventHistory) add(e *Event) {
	c := len(h.events)
	if h.n == c {
		h.events[h.front] = e
		h.front = (h.front + 1) % c
	} else {
		h.events[(h.front+h.n)%c] = e
		h.n++
	}
	h.lastIndex = e.Index()
	h.startIndex = h.events[h.front].Index()
}

func (h *eventHistory) scan(key string, recursive bool, index uint64) (*Event, *Error) {
	if index < h.startIndex {
		return nil, NewError(EcodeEventIndexCleared, fmt.Sprintf("the requested history has been cleared [%v/%v]", h.startIndex, index), 0)
	}
	if index > h.lastIndex || h.n == 0 {
		return nil, nil
	}
	prefix := key
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	// Every index has exactly one event, so index maps to a ring offset.
	for i := int(index - h.startIndex); i < h.n; i++ {
		e := h.events[(h.front+i)%len(h.events)]
		if e.Refresh {
			continue
		}
		k := e.Node.Key
		if k == "" {
			k = "/"
		}
		ok := k == key || (recursive && strings.HasPrefix(k, prefix))
		if (e.Action == ActionDelete || e.Action == ActionExpire) && e.PrevNode != nil && e.PrevNode.Dir {
			// A deleted directory took key with it only if key lies below
			// it: "/d" going away says nothing about "/dx".
			ok = ok || strings.HasPrefix(key, k+"/")
		}
		if ok {
			return e, nil
		}
	}
	return nil, nil
}
