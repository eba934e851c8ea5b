package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/migrate"
	"github.com/hashicorp/raft-wal/segment"
	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Files in a data dir. The raft log and stable store live in walDir
// (hashicorp/raft-wal: one fsync per append; raft-boltdb's copy-on-write
// B-tree cost two per commit plus page writes, which made the log the
// largest cost of a write). Snapshots sit beside it in snapshots/.
const (
	walDir     = "wal"
	lockFile   = "pithd.lock"
	boltLog    = "raft.db"          // the log of releases before raft-wal
	boltLogOld = "raft.db.migrated" // kept after migration until removed by hand
)

// logStore is the open raft log and stable store of a data dir.
type logStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
	sync *syncer
	lock *os.File
	// raft, once set, tells whether this node leads (see walsync.go).
	raft atomic.Pointer[raft.Raft]
}

// StoreLogs appends entries; on the leader the fsync runs concurrently
// with replication (see walsync.go).
func (s *logStore) StoreLogs(logs []*raft.Log) error {
	r := s.raft.Load()
	return s.sync.storeLogs(s.WAL, logs, r != nil && r.State() == raft.Leader)
}

func (s *logStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// DeleteRange truncates the log; a tail truncation takes back the synced
// mark past it.
func (s *logStore) DeleteRange(min, max uint64) error {
	last, err := s.WAL.LastIndex()
	if err != nil {
		return err
	}
	if err := s.WAL.DeleteRange(min, max); err != nil {
		return err
	}
	if max >= last && min > 0 {
		s.sync.truncated(min - 1)
	}
	return nil
}

// Close syncs what is written and releases the WAL, its meta DB and the
// data dir's lock. raft-wal's own Close leaves the meta DB (and its file
// lock) open.
func (s *logStore) Close() error {
	if s == nil || s.lock == nil {
		return nil
	}
	err := s.sync.syncAll()
	s.sync.close()
	if cerr := s.WAL.Close(); err == nil {
		err = cerr
	}
	if cerr := s.meta.Close(); err == nil {
		err = cerr
	}
	s.lock.Close()
	s.lock = nil
	return err
}

// HasState reports whether dir holds a member's raft state (a node
// restarting with it rejoins by itself instead of bootstrapping).
func HasState(dir string) bool {
	for _, p := range []string{filepath.Join(dir, walDir, metadb.FileName), filepath.Join(dir, boltLog)} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// openLogStore locks dir and opens its WAL, first moving a raft-boltdb log
// left by an earlier release into it.
func openLogStore(dir string, log *slog.Logger) (*logStore, error) {
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	if err := migrateBolt(dir, log); err != nil {
		return nil, err
	}
	sy := newSyncer()
	w, meta, err := openWAL(filepath.Join(dir, walDir), sy)
	if err != nil {
		sy.close()
		return nil, fmt.Errorf("open raft log in %s: %w", filepath.Join(dir, walDir), err)
	}
	last, err := w.LastIndex()
	if err != nil {
		w.Close()
		meta.Close()
		sy.close()
		return nil, fmt.Errorf("open raft log in %s: %w", filepath.Join(dir, walDir), err)
	}
	sy.opened(last)
	ok = true
	return &logStore{WAL: w, meta: meta, sync: sy, lock: lock}, nil
}

func openWAL(dir string, sy *syncer) (*wal.WAL, *metadb.BoltMetaDB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(syncedMeta{BoltMetaDB: meta, s: sy}),
		wal.WithSegmentFiler(segment.NewFiler(dir, syncFS{s: sy})), wal.WithLogger(hclog.New(&hclog.LoggerOptions{Name: "wal", Level: hclog.Warn, Output: os.Stderr})))
	if err != nil {
		meta.Close()
		return nil, nil, err
	}
	return w, meta, nil
}

// lockDataDir takes an exclusive lock on dir so a second pithd on the same
// data dir fails at once instead of corrupting the log.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another process (is pithd already running?)", dir)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	return f, nil
}

// migrateBolt copies a raft-boltdb log and stable store (raft.db) into a
// new WAL. The copy is built in wal.tmp and renamed into place, so a crash
// part way leaves raft.db authoritative and the next start redoes it; only
// then is raft.db renamed aside (kept, not deleted).
func migrateBolt(dir string, log *slog.Logger) error {
	src := filepath.Join(dir, boltLog)
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	dst := filepath.Join(dir, walDir)
	if _, err := os.Stat(dst); err == nil {
		// A crash came between the two renames: the WAL is complete.
		return finishMigration(dir)
	}
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("migrate %s: %w", src, err)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: src, BoltOptions: &bbolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}})
	if errors.Is(err, bbolt.ErrTimeout) {
		return fmt.Errorf("%s is in use by another process (a pithd of an earlier release still running?): stop it, then start this one to move the log to the new format", src)
	}
	if err != nil {
		return fmt.Errorf("open %s to move it to the new log format: %w (the file is untouched: run the earlier pithd release on it, or move the data dir aside to start this member empty and re-add it with pithctl member add)", src, err)
	}
	defer bolt.Close()
	sy := newSyncer()
	defer sy.close()
	w, meta, err := openWAL(tmp, sy)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", src, err)
	}
	err = copyLog(w, bolt)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if cerr := meta.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("migrate %s to %s: %w (the old log is untouched)", src, dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("migrate %s: %w", src, err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	first, _ := bolt.FirstIndex()
	last, _ := bolt.LastIndex()
	log.Info("moved the raft log to the WAL format", "from", src, "to", dst, "first", first, "last", last, "old", filepath.Join(dir, boltLogOld))
	return finishMigration(dir)
}

func finishMigration(dir string) error {
	if err := os.Rename(filepath.Join(dir, boltLog), filepath.Join(dir, boltLogOld)); err != nil {
		return fmt.Errorf("migrate raft log: %w", err)
	}
	return syncDir(dir)
}

// copyLog copies every entry and the raft stable keys. migrate.CopyStable
// fails on a key never written (a member that never voted has no
// LastVoteCand), so the keys are copied here, skipping absent ones.
func copyLog(dst *wal.WAL, src *raftboltdb.BoltStore) error {
	last, err := src.LastIndex()
	if err != nil {
		return err
	}
	if last > 0 {
		if err := migrate.CopyLogs(context.Background(), dst, src, 1<<20, nil); err != nil {
			return err
		}
	}
	for _, k := range []string{"CurrentTerm", "LastVoteTerm"} {
		v, err := src.GetUint64([]byte(k))
		if errors.Is(err, raftboltdb.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", k, err)
		}
		if err := dst.SetUint64([]byte(k), v); err != nil {
			return err
		}
	}
	v, err := src.Get([]byte("LastVoteCand"))
	if err == nil {
		err = dst.Set([]byte("LastVoteCand"), v)
	}
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return fmt.Errorf("read LastVoteCand: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var (
	_ raft.LogStore    = (*logStore)(nil)
	_ raft.StableStore = (*logStore)(nil)
)
