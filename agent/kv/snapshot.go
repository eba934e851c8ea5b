package kv

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
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
func (s *Store) Save(w io.Writer) error {
	s.mu.RLock()
	snap := snapshot{Version: 1, Index: s.index}
	var walk func(*node)
	walk = func(n *node) {
		if n != s.root {
			snap.Nodes = append(snap.Nodes, snapshotNode{Path: n.path, Dir: n.dir, Value: n.value, CreatedIndex: n.createdIndex, ModifiedIndex: n.modifiedIndex, Expire: n.expire})
		}
		names := make([]string, 0, len(n.children))
		for k := range n.children {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			walk(n.children[k])
		}
	}
	walk(s.root)
	h := s.hub.history
	for i := 0; i < h.n; i++ {
		e := h.events[(h.front+i)%len(h.events)]
		snap.History = append(snap.History, snapshotEvent{Event: *e, Refresh: e.Refresh})
	}
	s.mu.RUnlock()
	return json.NewEncoder(w).Encode(&snap)
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
