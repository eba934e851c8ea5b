package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// journal is a namespace that keeps every command it applied, in order.
type journal struct {
	mu  sync.Mutex
	cmd []string
}

func (j *journal) Apply(_ uint64, b []byte) any {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.cmd = append(j.cmd, string(b))
	return len(j.cmd)
}

func (j *journal) Save(w io.Writer) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return json.NewEncoder(w).Encode(j.cmd)
}

func (j *journal) Restore(r io.Reader) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.cmd = nil
	return json.NewDecoder(r).Decode(&j.cmd)
}

func (j *journal) all() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.cmd...)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// writeBoltDataDir writes a one-member data dir the way releases before
// raft-wal did (raft-boltdb log and stable store in raft.db, file
// snapshots), with n journal commands, a snapshot taken after the first
// half, so the log starts past index 1.
func writeBoltDataDir(t *testing.T, cfg Config, n int) {
	t.Helper()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, boltLog)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStore(cfg.DataDir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := peerAddr(cfg.PeerURLs[0])
	_, trans := raft.NewInmemTransport(raft.ServerAddress(addr))
	f := newFSM()
	_ = f.register(NamespaceMembers, newMembership())
	_ = f.register(NamespaceKV, &journal{})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(MemberID(cfg.PeerURLs, cfg.Token))
	rc.LogOutput = io.Discard
	rc.TrailingLogs = 2
	r, err := raft.NewRaft(rc, f, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Shutdown().Error() }()
	boot := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(addr), Suffrage: raft.Voter}}}
	if err := r.BootstrapCluster(boot).Error(); err != nil {
		t.Fatal(err)
	}
	for r.State() != raft.Leader {
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < n; i++ {
		if err := r.Apply(append([]byte{byte(NamespaceKV)}, fmt.Sprintf("old-%d", i)...), 0).Error(); err != nil {
			t.Fatal(err)
		}
		if i == n/2 {
			if err := r.Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func startJournalNode(t *testing.T, cfg Config) (*Node, *journal, error) {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	j := &journal{}
	if err := n.Register(NamespaceKV, j); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(http.NotFoundHandler()); err != nil {
		return nil, nil, err
	}
	for n.readyTerm.Load() == 0 || !n.IsLeader() {
		time.Sleep(10 * time.Millisecond)
	}
	return n, j, nil
}

// TestMigrateBoltDataDir starts today's node on data dirs written by the
// raft-boltdb releases, including ones left by a migration that crashed
// part way, and checks every committed command is still applied, new
// ones follow, and the result survives another restart.
func TestMigrateBoltDataDir(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"clean", func(*testing.T, string) {}},
		{"crashed while copying", func(t *testing.T, dir string) {
			// A half-written copy: raft.db is still the truth.
			if err := os.MkdirAll(filepath.Join(dir, walDir+".tmp"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, walDir+".tmp", "junk.wal"), []byte("partial"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"crashed between renames", func(t *testing.T, dir string) {
			// The WAL is complete, raft.db not yet renamed aside.
			lock, err := lockDataDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer lock.Close()
			if err := migrateBolt(dir, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(dir, boltLogOld), filepath.Join(dir, boltLog)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	const old = 40
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := freeAddr(t)
			cfg := Config{Name: "m0", DataDir: filepath.Join(t.TempDir(), "m0"), ListenPeer: addr, PeerURLs: []string{"http://" + addr}, Token: "mig",
				HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond}
			cfg.InitialCluster = []InitialMember{{Name: "m0", PeerURLs: cfg.PeerURLs}}
			writeBoltDataDir(t, cfg, old)
			c.setup(t, cfg.DataDir)
			if !HasState(cfg.DataDir) {
				t.Fatal("HasState is false for an old data dir")
			}
			n, j, err := startJournalNode(t, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := n.Propose(context.Background(), NamespaceKV, []byte("new-0")); err != nil {
				t.Fatal(err)
			}
			got := j.all()
			if err := n.Stop(); err != nil {
				t.Fatal(err)
			}
			var want []string
			for i := 0; i < old; i++ {
				want = append(want, fmt.Sprintf("old-%d", i))
			}
			want = append(want, "new-0")
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("applied after migration:\n%v\nwant\n%v", got, want)
			}
			for _, p := range []struct {
				name   string
				exists bool
			}{{boltLog, false}, {boltLogOld, true}, {walDir, true}, {walDir + ".tmp", false}} {
				if _, err := os.Stat(filepath.Join(cfg.DataDir, p.name)); (err == nil) != p.exists {
					t.Errorf("%s exists=%v after migration, want %v", p.name, err == nil, p.exists)
				}
			}
			// A second start reads the WAL alone.
			n, j, err = startJournalNode(t, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got = j.all()
			_ = n.Stop()
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("applied after restart:\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// TestOldDataDirInUse: a pithd of the old release still holding raft.db
// makes the new one refuse with a message saying what to do, and leaves
// raft.db untouched.
func TestOldDataDirInUse(t *testing.T) {
	addr := freeAddr(t)
	cfg := Config{Name: "m0", DataDir: filepath.Join(t.TempDir(), "m0"), ListenPeer: addr, PeerURLs: []string{"http://" + addr}, Token: "mig"}
	cfg.InitialCluster = []InitialMember{{Name: "m0", PeerURLs: cfg.PeerURLs}}
	writeBoltDataDir(t, cfg, 3)
	db, err := bbolt.Open(filepath.Join(cfg.DataDir, boltLog), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = n.Start(http.NotFoundHandler())
	if err == nil {
		_ = n.Stop()
		t.Fatal("started on a raft.db another process holds")
	}
	if !strings.Contains(err.Error(), "in use by another process") || !strings.Contains(err.Error(), "stop it") {
		t.Errorf("error does not say what to do: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, walDir)); err == nil {
		t.Error("a WAL was created although the migration failed")
	}
}

func TestHasState(t *testing.T) {
	cases := []struct {
		name  string
		files []string
		want  bool
	}{
		{"missing dir", nil, false},
		{"empty", []string{}, false},
		{"lock only", []string{lockFile}, false},
		{"wal", []string{walDir + "/wal-meta.db"}, true},
		{"old release", []string{boltLog}, true},
		{"half-copied migration only", []string{walDir + ".tmp/wal-meta.db"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			if c.files != nil {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range c.files {
				p := filepath.Join(dir, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if got := HasState(dir); got != c.want {
				t.Errorf("HasState = %v, want %v", got, c.want)
			}
		})
	}
}
