package cluster

// The leader's log fsync, off the critical path.
//
// hashicorp/raft writes the leader's entries to its log (StoreLogs) before
// it sends them to followers, and the leader loop waits for that write: an
// fsync on the leader, then one on each follower, one after the other, and
// no new batch or commit is handled meanwhile. etcd (raft thesis §10.2.1)
// writes the leader's log in parallel with replication. The same is done
// here: raft-wal runs on a file system layer (syncFS) whose Sync, while this
// node leads, only marks the segment dirty; a syncer goroutine fsyncs it at
// once, concurrently with replication. Durability stays: a write is
// acknowledged only when it is committed (so fsynced on a follower: a
// follower's StoreLogs syncs before it answers) and the leader's own log is
// fsynced through its index (Propose waits for both), so every acknowledged
// write is on disk on a quorum. Metadata (segment rotation, truncation)
// commits only after dirty segments are synced, and snapshots persist only
// after the log is synced, so no on-disk state points at unsynced entries.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/types"
	"golang.org/x/sys/unix"
)

// syncer tracks which segment files hold unsynced writes and how far the
// log is durable.
type syncer struct {
	mu       sync.Mutex
	dirty    map[*syncFile]struct{}
	deferOn  bool   // set around a leader's StoreLogs
	written  uint64 // last index handed to the WAL
	durable  uint64 // last index known fsynced
	err      error  // a failed fsync: durability is lost, every wait fails
	truncGen uint64 // bumped by tail truncations
	advanced chan struct{}
	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	// syncMu serialises fsync rounds so durable only moves forward.
	syncMu sync.Mutex
	// beforeSync, set by tests (under mu), runs before a round fsyncs.
	beforeSync func()
}

func newSyncer() *syncer {
	s := &syncer{dirty: map[*syncFile]struct{}{}, advanced: make(chan struct{}), kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

func (s *syncer) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
			_ = s.syncAll()
		}
	}
}

func (s *syncer) close() {
	close(s.stop)
	<-s.done
}

// syncAll fsyncs every dirty segment and marks the log durable through the
// last index written before it started.
func (s *syncer) syncAll() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	target, gen := s.written, s.truncGen
	files := make([]*syncFile, 0, len(s.dirty))
	for f := range s.dirty {
		files = append(files, f)
	}
	clear(s.dirty)
	hook := s.beforeSync
	s.mu.Unlock()
	if hook != nil && len(files) > 0 {
		hook()
	}
	var err error
	for _, f := range files {
		if err = f.syncNow(); err != nil {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.err = fmt.Errorf("fsync raft log: %w", err)
	} else if gen == s.truncGen {
		s.durable = max(s.durable, target)
	}
	close(s.advanced)
	s.advanced = make(chan struct{})
	return s.err
}

// markDirty records an unsynced segment (a Sync while deferring) and
// reports whether the caller should fsync itself instead.
func (s *syncer) markDirty(f *syncFile) (syncNow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.deferOn {
		return true
	}
	s.dirty[f] = struct{}{}
	return false
}

// forget drops a file about to be closed; a dirty one is synced first.
func (s *syncer) forget(f *syncFile) error {
	s.mu.Lock()
	_, dirty := s.dirty[f]
	delete(s.dirty, f)
	s.mu.Unlock()
	if dirty {
		return f.syncNow()
	}
	return nil
}

// errSyncStopped: the node stopped before the log was fsynced that far.
var errSyncStopped = errors.New("raft log closed before it was synced")

// opened records the log as it was found at open: entries through last are
// written, and the tail segment (a crashed process may have left it
// unsynced in the page cache) is fsynced before any of them counts durable.
func (s *syncer) opened(last uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written = max(s.written, last)
}

// durableIndex is the last index known fsynced.
func (s *syncer) durableIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable
}

// waitDurable returns once the log is fsynced through index.
func (s *syncer) waitDurable(index uint64, abort <-chan struct{}) error {
	for {
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return err
		}
		if s.durable >= index {
			s.mu.Unlock()
			return nil
		}
		ch := s.advanced
		s.mu.Unlock()
		select {
		case s.kick <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-abort:
			return errSyncStopped
		case <-s.stop:
			return errSyncStopped
		}
	}
}

// syncFS is raft-wal's file system layer (types.VFS) on the OS, with
// Sync going through the syncer.
type syncFS struct{ s *syncer }

func (fs syncFS) ListDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

func (fs syncFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if size > 0 {
		// Allocated up front so appends do not grow the file; a file system
		// without fallocate just grows it as it goes.
		if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("preallocate %s: %w", f.Name(), err)
		}
	}
	// The new directory entry is made durable with the file's first sync.
	return &syncFile{File: f, s: fs.s, dir: dir, newFile: true}, nil
}

func (fs syncFS) Delete(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func (fs syncFS) OpenReader(dir, name string) (types.ReadableFile, error) {
	return os.Open(filepath.Join(dir, name))
}

func (fs syncFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	sf := &syncFile{File: f, s: fs.s, dir: dir}
	// The WAL reopens its tail segment for appends: what an earlier process
	// wrote there may never have reached the disk, so sync it once first.
	fs.s.mu.Lock()
	fs.s.dirty[sf] = struct{}{}
	fs.s.mu.Unlock()
	return sf, nil
}

type syncFile struct {
	*os.File
	s   *syncer
	dir string
	mu  sync.Mutex
	// newFile: the parent directory still needs an fsync.
	newFile bool
}

// Sync is raft-wal's commit point: deferred to the syncer on a leader.
func (f *syncFile) Sync() error {
	if f.s.markDirty(f) {
		return f.syncNow()
	}
	return nil
}

func (f *syncFile) syncNow() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return err
	}
	if f.newFile {
		if err := syncDir(f.dir); err != nil {
			return err
		}
		f.newFile = false
	}
	return nil
}

func (f *syncFile) Close() error {
	if err := f.s.forget(f); err != nil {
		f.File.Close()
		return err
	}
	return f.File.Close()
}

// syncedMeta is raft-wal's meta DB, committing only after every dirty
// segment is synced (a rotation or truncation must never be durable
// while the entries it refers to are not).
type syncedMeta struct {
	*metadb.BoltMetaDB
	s *syncer
}

func (m syncedMeta) CommitState(st types.PersistentState) error {
	if err := m.s.syncAll(); err != nil {
		return err
	}
	return m.BoltMetaDB.CommitState(st)
}

// storeLogs appends to the WAL. On a leader (deferSync) the fsync runs in
// the background; elsewhere it completes before returning, as raft needs
// (a follower acknowledges what it stored).
func (s *syncer) storeLogs(w *wal.WAL, logs []*raft.Log, deferSync bool) error {
	if len(logs) == 0 {
		return nil
	}
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	s.deferOn = deferSync
	s.mu.Unlock()
	err := w.StoreLogs(logs)
	s.mu.Lock()
	s.deferOn = false
	if err == nil {
		s.written = logs[len(logs)-1].Index
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if !deferSync {
		// The WAL synced its file in the call; this also syncs segments
		// left dirty while leading, and moves the durable mark in order
		// with any background round.
		return s.syncAll()
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// truncated lowers written/durable after a tail truncation so later
// indexes are not taken for synced.
func (s *syncer) truncated(max uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncGen++
	if s.written > max {
		s.written = max
	}
	if s.durable > max {
		s.durable = max
	}
}
