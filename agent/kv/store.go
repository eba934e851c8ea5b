package kv

import (
	"fmt"
	"path"
	"sync"
	"sync/atomic"
	"time"
)

// Store is the etcd v2 data model: a tree of keys and directories with a
// global index. Every mutation is deterministic given its arguments (expiry
// times are absolute and chosen by the proposer), so replicas that apply the
// same commands in the same order hold the same tree. Reads and watches may
// run concurrently with mutations.
type Store struct {
	mu    sync.RWMutex
	root  *node
	index uint64
	ttls  ttlHeap
	hub   *watcherHub
	// now is the local clock, used only to render TTLs for display.
	now   func() time.Time
	stats storeStats
}

// Options bound the store's memory use.
type Options struct {
	// HistorySize is the number of events kept for watches with waitIndex.
	HistorySize int
	// MaxWatchers bounds concurrent watchers (0: no bound).
	MaxWatchers int
}

// DefaultHistorySize is etcd's event history window.
const DefaultHistorySize = 1000

// NewStore returns an empty store.
func NewStore(opt Options) *Store {
	if opt.HistorySize <= 0 {
		opt.HistorySize = DefaultHistorySize
	}
	s := &Store{now: time.Now}
	s.root = newDir("/", 0, nil, 0)
	s.hub = newWatcherHub(opt.HistorySize, opt.MaxWatchers)
	return s
}

func newDir(p string, idx uint64, parent *node, expire int64) *node {
	return &node{path: p, createdIndex: idx, modifiedIndex: idx, parent: parent, expire: expire, dir: true, children: map[string]*node{}, heapIdx: -1}
}

// Index is the current store index.
func (s *Store) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

func cleanPath(p string) string { return path.Clean(path.Join("/", p)) }

// internalGet walks to nodePath; errors name the first missing component.
func (s *Store) internalGet(nodePath string) (*node, *Error) {
	n := s.root
	for _, name := range splitPath(nodePath) {
		if !n.dir {
			return nil, NewError(EcodeNotDir, n.path, s.index)
		}
		c, ok := n.children[name]
		if !ok {
			return nil, NewError(EcodeKeyNotFound, path.Join(n.path, name), s.index)
		}
		n = c
	}
	return n, nil
}

// Get returns the node at nodePath (a directory lists its children).
func (s *Store) Get(nodePath string, recursive, sorted bool) (*Event, error) {
	nodePath = cleanPath(nodePath)
	s.mu.RLock()
	defer s.mu.RUnlock()
	n, err := s.internalGet(nodePath)
	if err != nil {
		s.stats.inc(&s.stats.GetsFail)
		return nil, err
	}
	s.stats.inc(&s.stats.GetsSuccess)
	return &Event{Action: ActionGet, Node: n.load(recursive, sorted, s.now()), EtcdIndex: s.index}, nil
}

// Set creates or replaces a key (or creates a directory).
func (s *Store) Set(nodePath string, dir bool, value string, expire int64, refresh bool) (*Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.set(cleanPath(nodePath), dir, value, expire, refresh)
	s.stats.result(err, &s.stats.SetsSuccess, &s.stats.SetsFail)
	return e, err
}

func (s *Store) set(nodePath string, dir bool, value string, expire int64, refresh bool) (*Event, error) {
	n, gerr := s.internalGet(nodePath)
	if gerr != nil && gerr.ErrorCode != EcodeKeyNotFound {
		return nil, gerr
	}
	if refresh {
		if gerr != nil {
			return nil, gerr
		}
		value = n.value
	}
	var prev *NodeExtern
	if gerr == nil {
		prev = n.load(false, false, s.now())
	}
	e, err := s.create(nodePath, dir, value, false, true, expire, ActionSet)
	if err != nil {
		return nil, err
	}
	e.PrevNode = prev
	s.emit(e, refresh)
	return e, nil
}

// Create creates a key or directory that must not exist; with unique it
// creates an in-order key named after the next index under nodePath.
func (s *Store) Create(nodePath string, dir bool, value string, unique bool, expire int64) (*Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.create(cleanPath(nodePath), dir, value, unique, false, expire, ActionCreate)
	if err == nil {
		s.emit(e, false)
	}
	s.stats.result(err, &s.stats.CreateSuccess, &s.stats.CreateFail)
	return e, err
}

func (s *Store) create(nodePath string, dir bool, value string, unique, replace bool, expire int64, action string) (*Event, error) {
	curr, next := s.index, s.index+1
	if unique {
		nodePath += "/" + fmt.Sprintf("%020d", next)
	}
	nodePath = cleanPath(nodePath)
	if nodePath == "/" {
		return nil, NewError(EcodeRootROnly, "/", curr)
	}
	dirName, name := path.Split(nodePath)
	// Check the whole path before creating anything, so a failed create
	// leaves no intermediate directories behind.
	d := s.root
	parts := splitPath(dirName)
	i := 0
	for ; i < len(parts); i++ {
		c, ok := d.children[parts[i]]
		if !ok {
			break
		}
		if !c.dir {
			return nil, NewError(EcodeNotDir, c.path, curr)
		}
		d = c
	}
	var existing *node
	if i == len(parts) {
		existing = d.children[name]
	}
	var prev *NodeExtern
	if existing != nil {
		if !replace {
			return nil, NewError(EcodeNodeExist, nodePath, curr)
		}
		if existing.dir {
			return nil, NewError(EcodeNotFile, nodePath, curr)
		}
		prev = existing.repr(false, false, s.now())
		s.removeNode(existing)
	}
	for ; i < len(parts); i++ {
		c := newDir(path.Join(d.path, parts[i]), next, d, 0)
		d.children[parts[i]] = c
		d = c
	}
	var n *node
	if dir {
		n = newDir(nodePath, next, d, expire)
	} else {
		n = &node{path: nodePath, createdIndex: next, modifiedIndex: next, parent: d, expire: expire, value: value, heapIdx: -1}
	}
	d.children[name] = n
	if !n.permanent() {
		s.ttls.add(n)
	}
	s.index = next
	return &Event{Action: action, Node: n.repr(false, false, s.now()), PrevNode: prev, EtcdIndex: next}, nil
}

// Update changes an existing key's value and TTL (a directory's TTL only).
func (s *Store) Update(nodePath, value string, expire int64, refresh bool) (*Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.update(cleanPath(nodePath), value, expire, refresh)
	s.stats.result(err, &s.stats.UpdateSuccess, &s.stats.UpdateFail)
	return e, err
}

func (s *Store) update(nodePath, value string, expire int64, refresh bool) (*Event, error) {
	curr, next := s.index, s.index+1
	if nodePath == "/" {
		return nil, NewError(EcodeRootROnly, "/", curr)
	}
	n, err := s.internalGet(nodePath)
	if err != nil {
		return nil, err
	}
	if n.dir && len(value) != 0 {
		return nil, NewError(EcodeNotFile, nodePath, curr)
	}
	if refresh {
		value = n.value
	}
	now := s.now()
	prev := n.repr(false, false, now)
	if !n.dir {
		n.value = value
	}
	n.modifiedIndex = next
	s.setExpire(n, expire)
	s.index = next
	e := &Event{Action: ActionUpdate, Node: n.repr(false, false, now), PrevNode: prev, EtcdIndex: next}
	s.emit(e, refresh)
	return e, nil
}

func (s *Store) setExpire(n *node, expire int64) {
	switch {
	case n.permanent() && expire != 0:
		n.expire = expire
		s.ttls.add(n)
	case !n.permanent() && expire == 0:
		s.ttls.remove(n)
		n.expire = 0
	case !n.permanent():
		n.expire = expire
		s.ttls.fix(n)
	}
}

// CompareAndSwap replaces a key's value if prevValue and/or prevIndex match.
func (s *Store) CompareAndSwap(nodePath, prevValue string, prevIndex uint64, value string, expire int64, refresh bool) (*Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.cas(cleanPath(nodePath), prevValue, prevIndex, value, expire, refresh)
	s.stats.result(err, &s.stats.CompareAndSwapSuccess, &s.stats.CompareAndSwapFail)
	return e, err
}

func (s *Store) compare(n *node, prevValue string, prevIndex uint64) *Error {
	indexOK := prevIndex == 0 || n.modifiedIndex == prevIndex
	valueOK := prevValue == "" || n.value == prevValue
	if indexOK && valueOK {
		return nil
	}
	return NewError(EcodeTestFailed, compareFailCause(n, valueOK, indexOK, prevValue, prevIndex), s.index)
}

func (s *Store) cas(nodePath, prevValue string, prevIndex uint64, value string, expire int64, refresh bool) (*Event, error) {
	if nodePath == "/" {
		return nil, NewError(EcodeRootROnly, "/", s.index)
	}
	n, err := s.internalGet(nodePath)
	if err != nil {
		return nil, err
	}
	if n.dir {
		return nil, NewError(EcodeNotFile, nodePath, s.index)
	}
	if err := s.compare(n, prevValue, prevIndex); err != nil {
		return nil, err
	}
	if refresh {
		value = n.value
	}
	s.index++
	now := s.now()
	prev := n.repr(false, false, now)
	n.value = value
	n.modifiedIndex = s.index
	s.setExpire(n, expire)
	e := &Event{Action: ActionCompareAndSwap, Node: n.repr(false, false, now), PrevNode: prev, EtcdIndex: s.index}
	s.emit(e, refresh)
	return e, nil
}

// Delete removes a key, or a directory when dir (empty) or recursive.
func (s *Store) Delete(nodePath string, dir, recursive bool) (*Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.delete(cleanPath(nodePath), dir, recursive)
	s.stats.result(err, &s.stats.DeleteSuccess, &s.stats.DeleteFail)
	return e, err
}

func (s *Store) delete(nodePath string, dir, recursive bool) (*Event, error) {
	if nodePath == "/" {
		return nil, NewError(EcodeRootROnly, "/", s.index)
	}
	if recursive {
		dir = true
	}
	n, err := s.internalGet(nodePath)
	if err != nil {
		return nil, err
	}
	if n.dir {
		if !dir {
			return nil, NewError(EcodeNotFile, n.path, s.index)
		}
		if len(n.children) != 0 && !recursive {
			return nil, NewError(EcodeDirNotEmpty, n.path, s.index)
		}
	}
	s.index++
	e := &Event{Action: ActionDelete, Node: &NodeExtern{Key: n.path, Dir: n.dir, ModifiedIndex: s.index, CreatedIndex: n.createdIndex},
		PrevNode: n.repr(false, false, s.now()), EtcdIndex: s.index}
	s.removeNode(n)
	s.emit(e, false)
	return e, nil
}

// CompareAndDelete removes a key if prevValue and/or prevIndex match.
func (s *Store) CompareAndDelete(nodePath, prevValue string, prevIndex uint64) (*Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.cad(cleanPath(nodePath), prevValue, prevIndex)
	s.stats.result(err, &s.stats.CompareAndDeleteSuccess, &s.stats.CompareAndDeleteFail)
	return e, err
}

func (s *Store) cad(nodePath, prevValue string, prevIndex uint64) (*Event, error) {
	if nodePath == "/" {
		return nil, NewError(EcodeRootROnly, "/", s.index)
	}
	n, err := s.internalGet(nodePath)
	if err != nil {
		return nil, err
	}
	if n.dir {
		return nil, NewError(EcodeNotFile, nodePath, s.index)
	}
	if err := s.compare(n, prevValue, prevIndex); err != nil {
		return nil, err
	}
	s.index++
	e := &Event{Action: ActionCompareAndDelete, Node: &NodeExtern{Key: n.path, ModifiedIndex: s.index, CreatedIndex: n.createdIndex},
		PrevNode: n.repr(false, false, s.now()), EtcdIndex: s.index}
	s.removeNode(n)
	s.emit(e, false)
	return e, nil
}

// DeleteExpired removes every node whose expiry is at or before cutoff
// (Unix nanoseconds), one expire event each. Only the leader decides the
// cutoff, so replicas never expire keys on their own clocks.
func (s *Store) DeleteExpired(cutoff int64) []*Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Event
	for len(s.ttls) > 0 {
		n := s.ttls[0]
		if n.expire > cutoff {
			break
		}
		s.index++
		e := &Event{Action: ActionExpire, Node: &NodeExtern{Key: n.path, Dir: n.dir, ModifiedIndex: s.index, CreatedIndex: n.createdIndex},
			PrevNode: n.repr(false, false, s.now()), EtcdIndex: s.index}
		s.removeNode(n)
		s.emit(e, false)
		s.stats.inc(&s.stats.ExpireCount)
		out = append(out, e)
	}
	return out
}

// NextExpiry is the earliest expiry time (Unix nanoseconds), or 0.
func (s *Store) NextExpiry() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.ttls) == 0 {
		return 0
	}
	return s.ttls[0].expire
}

// removeNode unlinks n and its subtree from the tree and the TTL heap.
func (s *Store) removeNode(n *node) {
	var drop func(*node)
	drop = func(x *node) {
		if !x.permanent() {
			s.ttls.remove(x)
		}
		for _, c := range x.children {
			drop(c)
		}
	}
	drop(n)
	if n.parent != nil && n.parent.children[n.name()] == n {
		delete(n.parent.children, n.name())
	}
}

// emit records e in the history and, unless it is a refresh, tells watchers.
func (s *Store) emit(e *Event, refresh bool) {
	if refresh {
		e.Refresh = true
		s.hub.history.add(e)
		return
	}
	s.hub.notify(e)
}

// Watch registers a watcher for key (and below it when recursive) for
// events at or after sinceIndex (0: the next one). An event already in the
// history is delivered at once.
func (s *Store) Watch(key string, recursive, stream bool, sinceIndex uint64) (*Watcher, error) {
	key = cleanPath(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sinceIndex == 0 {
		sinceIndex = s.index + 1
	}
	return s.hub.watch(key, recursive, stream, sinceIndex, s.index)
}

// Stats returns the store's counters (etcd's /v2/stats/store).
func (s *Store) Stats() map[string]uint64 {
	m := s.stats.snapshot()
	m["watchers"] = uint64(s.hub.count.Load())
	return m
}

type storeStats struct {
	GetsSuccess, GetsFail                         atomic.Uint64
	SetsSuccess, SetsFail                         atomic.Uint64
	DeleteSuccess, DeleteFail                     atomic.Uint64
	UpdateSuccess, UpdateFail                     atomic.Uint64
	CreateSuccess, CreateFail                     atomic.Uint64
	CompareAndSwapSuccess, CompareAndSwapFail     atomic.Uint64
	CompareAndDeleteSuccess, CompareAndDeleteFail atomic.Uint64
	ExpireCount                                   atomic.Uint64
}

func (st *storeStats) inc(c *atomic.Uint64) { c.Add(1) }

func (st *storeStats) result(err error, ok, fail *atomic.Uint64) {
	if err != nil {
		fail.Add(1)
	} else {
		ok.Add(1)
	}
}

func (st *storeStats) snapshot() map[string]uint64 {
	return map[string]uint64{
		"getsSuccess": st.GetsSuccess.Load(), "getsFail": st.GetsFail.Load(),
		"setsSuccess": st.SetsSuccess.Load(), "setsFail": st.SetsFail.Load(),
		"deleteSuccess": st.DeleteSuccess.Load(), "deleteFail": st.DeleteFail.Load(),
		"updateSuccess": st.UpdateSuccess.Load(), "updateFail": st.UpdateFail.Load(),
		"createSuccess": st.CreateSuccess.Load(), "createFail": st.CreateFail.Load(),
		"compareAndSwapSuccess": st.CompareAndSwapSuccess.Load(), "compareAndSwapFail": st.CompareAndSwapFail.Load(),
		"compareAndDeleteSuccess": st.CompareAndDeleteSuccess.Load(), "compareAndDeleteFail": st.CompareAndDeleteFail.Load(),
		"expireCount": st.ExpireCount.Load(),
	}
}
