package kv

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// snapshotNode is one node in a snapshot, parents before children.
type snapshotNode struct {
	Path          string `json:"p"`
	Dir           bool   `json:"d,omitempty"`
	Value         string `json:"v,omitempty"`
	CreatedIndex  uint64 `json:"c"`
	ModifiedIndex uint64 `json:"m"`
	Expire        int64  `json:"e,omitempty"`
}

type snapshotEvent struct {
	Event
	Refresh bool `json:"r,omitempty"`
}

type snapshot struct {
	Version int             `json:"version"`
	Index   uint64          `json:"index"`
	Nodes   []snapshotNode  `json:"nodes"`
	History []snapshotEvent `json:"history"`
}

// Save writes the whole store, including the watch history so watches
// with waitIndex keep working on a replica restored from it.
func (s *Store) Save(w io.Writer) error { return s.Capture()(w) }

// Capture copies what Save writes, as of now, and returns what writes that
// copy. Only the copy holds the store's lock, and it copies no values
// (strings do not change): raft pauses applies while a snapshot is taken,
// so the sorting and encoding, most of a snapshot's cost, run after them,
// in raft's snapshot goroutine (etcd clones its v2 store the same way and
// encodes the clone in the background). The bytes are Save's: nodes in
// depth-first order, children by name.
func (s *Store) Capture() func(io.Writer) error {
	s.mu.RLock()
	// Sized first: growing the slice by appends was most of the copy's time.
	var count func(*node) int
	count = func(n *node) int {
		c := len(n.children)
		for _, ch := range n.children {
			if ch.dir {
				c += count(ch)
			}
		}
		return c
	}
	snap := snapshot{Version: 1, Index: s.index, Nodes: make([]snapshotNode, 0, count(s.root))}
	var walk func(*node)
	walk = func(n *node) {
		if n != s.root {
			snap.Nodes = append(snap.Nodes, snapshotNode{Path: n.path, Dir: n.dir, Value: n.value, CreatedIndex: n.createdIndex, ModifiedIndex: n.modifiedIndex, Expire: n.expire})
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(s.root)
	h := s.hub.history
	for i := 0; i < h.n; i++ {
		e := h.events[(h.front+i)%len(h.events)]
		snap.History = append(snap.History, snapshotEvent{Event: *e, Refresh: e.Refresh})
	}
	s.mu.RUnlock()
	return func(w io.Writer) error {
		slices.SortFunc(snap.Nodes, func(a, b snapshotNode) int { return compareDepthFirst(a.Path, b.Path) })
		return json.NewEncoder(w).Encode(&snap)
	}
}

// compareDepthFirst orders paths as a depth-first walk that visits
// children by name does: segment by segment, a path before the paths
// under it ("/a" < "/a/b" < "/a-b", where plain byte order puts "/a-b"
// first).
func compareDepthFirst(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	// Past the end sorts first, then the end of a segment, then bytes.
	rank := func(p string) int {
		switch {
		case i == len(p):
			return -1
		case p[i] == '/':
			return 0
		default:
			return int(p[i]) + 1
		}
	}
	return rank(a) - rank(b)
}

// Restore replaces the store's content with a snapshot written by Save.
// Current watchers are dropped, as in etcd after a recovery.
func (s *Store) Restore(r io.Reader) error {
	var snap snapshot
	if err := json.NewDecoder(r).Decode(&snap); err != nil {
		return fmt.Errorf("kv snapshot: %w", err)
	}
	if snap.Version != 1 {
		return fmt.Errorf("kv snapshot: unknown version %d", snap.Version)
	}
	root := newDir("/", 0, nil, 0)
	var ttls ttlHeap
	for _, sn := range snap.Nodes {
		dirName, name := splitDir(sn.Path)
		parent := root
		for _, seg := range splitPath(dirName) {
			c, ok := parent.children[seg]
			if !ok || !c.dir {
				return fmt.Errorf("kv snapshot: %s has no parent directory", sn.Path)
			}
			parent = c
		}
		n := &node{path: sn.Path, createdIndex: sn.CreatedIndex, modifiedIndex: sn.ModifiedIndex, parent: parent, expire: sn.Expire, value: sn.Value, dir: sn.Dir, heapIdx: -1}
		if n.dir {
			n.children = map[string]*node{}
		}
		parent.children[name] = n
		if n.expire != 0 {
			ttls.add(n)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.root, s.index, s.ttls = root, snap.Index, ttls
	s.hub.mu.Lock()
	for _, m := range s.hub.watchers {
		for w := range m {
			s.hub.removeLocked(w)
		}
	}
	s.hub.history = newEventHistory(len(s.hub.history.events))
	s.hub.mu.Unlock()
	for i := range snap.History {
		e := snap.History[i].Event
		e.Refresh = snap.History[i].Refresh
		s.hub.history.add(&e)
	}
	return nil
}

func splitDir(p string) (string, string) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i+1], p[i+1:]
		}
	}
	return "/", p
}
