package kv

import (
	"container/heap"
	"path"
	"sort"
	"strings"
	"time"
)

// NodeExtern is a key or directory as it appears on the wire.
type NodeExtern struct {
	Key           string        `json:"key,omitempty"`
	Value         *string       `json:"value,omitempty"`
	Dir           bool          `json:"dir,omitempty"`
	Expiration    *time.Time    `json:"expiration,omitempty"`
	TTL           int64         `json:"ttl,omitempty"`
	Nodes         []*NodeExtern `json:"nodes,omitempty"`
	ModifiedIndex uint64        `json:"modifiedIndex,omitempty"`
	CreatedIndex  uint64        `json:"createdIndex,omitempty"`
}

// Event is the result of a store operation, and what watchers receive.
type Event struct {
	Action   string      `json:"action"`
	Node     *NodeExtern `json:"node,omitempty"`
	PrevNode *NodeExtern `json:"prevNode,omitempty"`
	// EtcdIndex is the store index after the operation (X-Etcd-Index).
	EtcdIndex uint64 `json:"-"`
	// Refresh events (TTL refreshes) are kept in the history but never
	// delivered to watchers, as in etcd.
	Refresh bool `json:"-"`
}

// Index is the index at which the event happened.
func (e *Event) Index() uint64 { return e.Node.ModifiedIndex }

// IsCreated reports whether the event created a key (HTTP 201).
func (e *Event) IsCreated() bool {
	return e.Action == ActionCreate || (e.Action == ActionSet && e.PrevNode == nil)
}

// Actions as etcd names them.
const (
	ActionGet              = "get"
	ActionCreate           = "create"
	ActionSet              = "set"
	ActionUpdate           = "update"
	ActionDelete           = "delete"
	ActionCompareAndSwap   = "compareAndSwap"
	ActionCompareAndDelete = "compareAndDelete"
	ActionExpire           = "expire"
)

// node is one key or directory in the tree. Files have children == nil.
type node struct {
	path          string
	createdIndex  uint64
	modifiedIndex uint64
	parent        *node
	// expire is the absolute expiry time in Unix nanoseconds; 0 is permanent.
	// It is decided by the proposer, so every replica holds the same value.
	expire   int64
	value    string
	dir      bool
	children map[string]*node
	heapIdx  int
}

func (n *node) name() string { _, name := path.Split(n.path); return name }

func (n *node) hidden() bool {
	name := n.name()
	return name != "" && name[0] == '_'
}

func (n *node) permanent() bool { return n.expire == 0 }

// expirationAndTTL computes the TTL as etcd does: ceil((expire-now)/1s).
func (n *node) expirationAndTTL(now time.Time) (*time.Time, int64) {
	if n.permanent() {
		return nil, 0
	}
	exp := time.Unix(0, n.expire).UTC()
	d := exp.Sub(now)
	ttl := d / time.Second
	if d%time.Second > 0 {
		ttl++
	}
	return &exp, int64(ttl)
}

// extKey hides the root's path, as etcd does (its root is its key prefix).
func extKey(p string) string {
	if p == "/" {
		return ""
	}
	return p
}

// repr renders the node; children only when recursive (hidden ones never).
func (n *node) repr(recursive, sorted bool, now time.Time) *NodeExtern {
	e := &NodeExtern{Key: extKey(n.path), ModifiedIndex: n.modifiedIndex, CreatedIndex: n.createdIndex}
	e.Expiration, e.TTL = n.expirationAndTTL(now)
	if !n.dir {
		v := n.value
		e.Value = &v
		return e
	}
	e.Dir = true
	if recursive {
		e.Nodes = n.listExtern(true, sorted, now)
	}
	return e
}

// load renders the node as a get does: a directory lists its direct
// children even when not recursive.
func (n *node) load(recursive, sorted bool, now time.Time) *NodeExtern {
	if !n.dir {
		return n.repr(false, false, now)
	}
	e := &NodeExtern{Key: extKey(n.path), Dir: true, ModifiedIndex: n.modifiedIndex, CreatedIndex: n.createdIndex}
	e.Nodes = n.listExtern(recursive, sorted, now)
	e.Expiration, e.TTL = n.expirationAndTTL(now)
	return e
}

func (n *node) listExtern(recursive, sorted bool, now time.Time) []*NodeExtern {
	out := make([]*NodeExtern, 0, len(n.children))
	for _, c := range n.children {
		if c.hidden() {
			continue
		}
		out = append(out, c.repr(recursive, sorted, now))
	}
	// etcd leaves the order unspecified when not sorted; sorting always
	// costs little and makes answers reproducible.
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// ttlHeap orders expiring nodes by expiry, then path (deterministic order).
type ttlHeap []*node

func (h ttlHeap) Len() int { return len(h) }
func (h ttlHeap) Less(i, j int) bool {
	if h[i].expire != h[j].expire {
		return h[i].expire < h[j].expire
	}
	return h[i].path < h[j].path
}
func (h ttlHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *ttlHeap) Push(x any) {
	n := x.(*node)
	n.heapIdx = len(*h)
	*h = append(*h, n)
}
func (h *ttlHeap) Pop() any {
	old := *h
	n := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	n.heapIdx = -1
	return n
}

func (h *ttlHeap) add(n *node) { heap.Push(h, n) }
func (h *ttlHeap) remove(n *node) {
	if n.heapIdx >= 0 && n.heapIdx < len(*h) && (*h)[n.heapIdx] == n {
		heap.Remove(h, n.heapIdx)
	}
}
func (h *ttlHeap) fix(n *node) {
	if n.heapIdx >= 0 && n.heapIdx < len(*h) && (*h)[n.heapIdx] == n {
		heap.Fix(h, n.heapIdx)
	}
}

// splitPath returns the components of a clean absolute path.
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}
