package update

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"
)

// fakeSlots keeps the two slots as files and records what the agent did,
// in order. It stands in for image/slot + the ESP, which have their own tests.
type fakeSlots struct {
	mu      sync.Mutex
	dir     string
	running string
	log     []string
}

func newFakeSlots(t *testing.T, running string) *fakeSlots {
	f := &fakeSlots{dir: t.TempDir(), running: running}
	for _, s := range []string{"a", "b"} {
		os.WriteFile(f.usr(s), bytes.Repeat([]byte(s), 4<<20), 0o600)
	}
	return f
}

func (f *fakeSlots) usr(s string) string { return filepath.Join(f.dir, "usr-"+s) }
func (f *fakeSlots) record(s string) {
	f.mu.Lock()
	f.log = append(f.log, s)
	f.mu.Unlock()
}
func (f *fakeSlots) events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}
func (f *fakeSlots) Running() (string, error)   { return f.running, nil }
func (f *fakeSlots) Invalidate(s string) error  { f.record("invalidate " + s); return nil }
func (f *fakeSlots) KernelPath(s string) string { return filepath.Join(f.dir, "vmlinuz-"+s) }
func (f *fakeSlots) InitrdPath(s string) string { return filepath.Join(f.dir, "initrd-"+s) }
func (f *fakeSlots) SetTrial(s string) error    { f.record("trial " + s); return nil }
func (f *fakeSlots) MarkGood(s string) error    { f.record("good " + s); return nil }

// SetVerity records nothing: DiskSlots' test checks the verification.
func (f *fakeSlots) SetVerity(string, string) error { return nil }

func (f *fakeSlots) USRTarget(s string) (channels.Target, error) {
	f.record("write " + s)
	return channels.Target{Path: f.usr(s)}, nil
}

type fakeReboot struct {
	mu      sync.Mutex
	reasons []string
	hook    func()
}

func (r *fakeReboot) Reboot(_ context.Context, reason string) error {
	r.mu.Lock()
	r.reasons = append(r.reasons, reason)
	hook := r.hook
	r.mu.Unlock()
	if hook != nil {
		hook()
	}
	return nil
}

func (r *fakeReboot) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reasons)
}

type release struct {
	usr, kernel, initrd []byte
}

type channelServer struct {
	dir string
	key ed25519.PrivateKey
	url string
	rel map[string]release

	mu    sync.Mutex
	paths []string // requested, in order
	boots int      // agents made: each stands for a new boot
	// verifyTimeout for the agents made (0: the default).
	verifyTimeout time.Duration
}

func (cs *channelServer) keyring() *channels.Keyring {
	return channels.NewKeyring(cs.key.Public().(ed25519.PublicKey))
}

func (cs *channelServer) requested() []string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return append([]string(nil), cs.paths...)
}

func data(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b[:n/2]) // half random, half zeros
	return b
}

func newChannelServer(t *testing.T) *channelServer {
	_, key, _ := ed25519.GenerateKey(nil)
	cs := &channelServer{dir: t.TempDir(), key: key, rel: map[string]release{}}
	srv, err := channels.NewServer(cs.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.mu.Lock()
		cs.paths = append(cs.paths, r.URL.Path)
		cs.mu.Unlock()
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { ts.Close(); srv.Close() })
	cs.url = ts.URL
	return cs
}

func (cs *channelServer) publish(t *testing.T, version string, seed int64) release {
	return cs.publishUSR(t, version, "", data(seed, 2<<20), seed)
}

func (cs *channelServer) publishUSR(t *testing.T, version, deltaFrom string, usr []byte, seed int64) release {
	r := release{usr: usr, kernel: data(seed+1, 200<<10), initrd: data(seed+2, 300<<10)}
	src := func(name, file string, b []byte) channels.PayloadSource {
		return channels.PayloadSource{Name: name, File: file, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
	}
	_, err := channels.Publish(cs.dir, channels.Release{Channel: "stable", Version: version, Platform: "linux/amd64", DeltaFrom: deltaFrom,
		Payloads: []channels.PayloadSource{src("usr", "usr", r.usr), src("kernel", "vmlinuz", r.kernel), src("initrd", "initrd", r.initrd)},
	}, []ed25519.PrivateKey{cs.key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs.rel[version] = r
	return r
}

func (cs *channelServer) agent(t *testing.T, stateDir, id, running string, slots Slots, rb Rebooter, kv rebootlock.KV, strategy Strategy) *Agent {
	t.Helper()
	cs.mu.Lock()
	cs.boots++
	boot := fmt.Sprintf("boot-%d", cs.boots)
	cs.mu.Unlock()
	a, err := New(Config{
		Server: cs.url, Channel: "stable", Strategy: strategy, MachineID: id, Running: running,
		Platform: "linux/amd64", Keys: channels.NewKeyring(cs.key.Public().(ed25519.PublicKey)),
		StateDir: stateDir, LockRetry: 5 * time.Millisecond, BootID: boot, VerifyTimeout: cs.verifyTimeout,
	}, slots, rb, kv, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAgentUpdateAndRollback(t *testing.T) {
	cs := newChannelServer(t)
	cs.publish(t, "1.0.0", 1)
	r11 := cs.publish(t, "1.1.0", 10)
	ctx := context.Background()
	state := t.TempDir()
	slots := newFakeSlots(t, "a")
	rb := &fakeReboot{}

	// 1.0.0 on slot a finds 1.1.0, writes slot b, reboots. A stale partial
	// download of some older release is cleaned up on the way.
	os.MkdirAll(filepath.Join(state, "downloads"), 0o700)
	stale := filepath.Join(state, "downloads", strings.Repeat("0", 64)+".part")
	os.WriteFile(stale, []byte("old"), 0o600)
	a := cs.agent(t, state, "m1", "1.0.0", slots, rb, nil, StrategyReboot)
	if err := a.CheckOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := slots.events(); len(got) != 3 || got[0] != "invalidate b" || got[1] != "write b" || got[2] != "trial b" {
		t.Fatalf("slot operations %v, want invalidate, write, trial of b", got)
	}
	usrB, _ := os.ReadFile(slots.usr("b"))
	if !bytes.Equal(usrB[:len(r11.usr)], r11.usr) {
		t.Fatal("slot b does not hold 1.1.0's USR")
	}
	if k, _ := os.ReadFile(slots.KernelPath("b")); !bytes.Equal(k, r11.kernel) {
		t.Fatal("kernel b is not 1.1.0's")
	}
	if usrA, _ := os.ReadFile(slots.usr("a")); !bytes.Equal(usrA, bytes.Repeat([]byte("a"), 4<<20)) {
		t.Fatal("the running slot was touched")
	}
	if left, _ := os.ReadDir(filepath.Join(state, "downloads")); len(left) != 0 {
		t.Fatalf("downloads left behind: %v", left)
	}
	if rb.count() != 1 || a.Status().Pending == nil || a.Status().Pending.Version != "1.1.0" {
		t.Fatalf("reboots %d, status %+v", rb.count(), a.Status())
	}
	if p := a.Status().Progress; p == nil || p.Payload != "usr -> slot b" || !p.Final || p.Done != int64(len(r11.usr)) {
		t.Fatalf("write progress %+v, want all of usr -> slot b", p)
	}

	// The machine comes back on slot b running 1.1.0: marked good.
	slots.running = "b"
	a = cs.agent(t, state, "m1", "1.1.0", slots, rb, nil, StrategyReboot)
	if err := a.AfterBoot(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := slots.events(); ev[len(ev)-1] != "good b" {
		t.Fatalf("slot b not marked good: %v", ev)
	}
	if st := a.Status(); st.Pending != nil || st.History[len(st.History)-1].Kind != "updated" {
		t.Fatalf("status after the update %+v", st)
	}
	// Up to date: nothing happens.
	n := len(slots.events())
	if err := a.CheckOnce(ctx); err != nil || len(slots.events()) != n || rb.count() != 1 {
		t.Fatalf("check when up to date: %v, %v", err, slots.events()[n:])
	}

	// 1.2.0 is broken: written to slot a, trial, reboot ... and the
	// machine comes back on slot b with 1.1.0.
	cs.publish(t, "1.2.0", 20)
	if err := a.CheckOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := slots.events(); ev[len(ev)-1] != "trial a" || rb.count() != 2 {
		t.Fatalf("1.2.0 not tried on slot a: %v", ev)
	}
	a = cs.agent(t, state, "m1", "1.1.0", slots, rb, nil, StrategyReboot)
	if err := a.AfterBoot(ctx); err != nil {
		t.Fatal(err)
	}
	st := a.Status()
	if last := st.History[len(st.History)-1]; last.Kind != "rollback" || last.Version != "1.2.0" {
		t.Fatalf("rollback not reported: %+v", st.History)
	}
	if ev := slots.events(); ev[len(ev)-1] != "invalidate a" {
		t.Fatalf("the failed slot a was not made unbootable after the rollback: %v", ev)
	}
	// 1.2.0 is not tried again; 1.3.0 is.
	n = len(slots.events())
	if err := a.CheckOnce(ctx); err != nil || len(slots.events()) != n || rb.count() != 2 {
		t.Fatalf("rolled-back version retried: %v %v", err, slots.events()[n:])
	}
	cs.publish(t, "1.3.0", 30)
	if err := a.CheckOnce(ctx); err != nil || rb.count() != 3 {
		t.Fatalf("1.3.0 not applied: %v", err)
	}
}

func TestAgentRejectsBadPayloadBeforeTouchingSlots(t *testing.T) {
	cs := newChannelServer(t)
	cs.publish(t, "1.1.0", 10)
	p := filepath.Join(cs.dir, "1.1.0", "initrd.zst") // the last payload
	b, _ := os.ReadFile(p)
	b[100] ^= 1
	os.WriteFile(p, b, 0o644)
	slots := newFakeSlots(t, "a")
	rb := &fakeReboot{}
	a := cs.agent(t, t.TempDir(), "m1", "1.0.0", slots, rb, nil, StrategyReboot)
	err := a.CheckOnce(context.Background())
	if !errors.Is(err, channels.ErrHash) {
		t.Fatalf("error %v, want a hash mismatch", err)
	}
	if ev := slots.events(); len(ev) != 0 || rb.count() != 0 {
		t.Fatalf("slots touched (%v) or reboot (%d) after a bad download", ev, rb.count())
	}
	// Wrong key: nothing happens either.
	other, _, _ := ed25519.GenerateKey(nil)
	a.cfg.Keys = channels.NewKeyring(other)
	if err := a.CheckOnce(context.Background()); !errors.Is(err, channels.ErrUnknownKey) {
		t.Fatalf("wrong key: %v", err)
	}
	// No key at all: refused before the server is asked anything.
	a.cfg.Keys = channels.NewKeyring()
	asked := len(cs.requested())
	if err := a.CheckOnce(context.Background()); !errors.Is(err, ErrNoTrustedKey) {
		t.Fatalf("no key: %v, want ErrNoTrustedKey", err)
	}
	if len(cs.requested()) != asked {
		t.Errorf("a node without keys fetched %v", cs.requested()[asked:])
	}
	if ev := slots.events(); len(ev) != 0 || rb.count() != 0 {
		t.Fatalf("slots touched (%v) or reboot (%d) with a wrong or no key", ev, rb.count())
	}
}

// noWatchKV hides MemKV's Watch: a KV that can only be polled.
type noWatchKV struct{ rebootlock.KV }

// TestAgentEtcdLock: two machines, max one holder: the second reboots only
// after the first is back, healthy, and has released its slot. Over a KV
// that can watch, the second is woken by the release itself (its retry
// timer is an hour); over one that cannot, it polls.
func TestAgentEtcdLock(t *testing.T) {
	for _, tc := range []struct {
		name  string
		watch bool
		retry time.Duration
	}{
		{"watch wakes the waiter", true, time.Hour},
		{"polling", false, 5 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) { testAgentEtcdLock(t, tc.watch, tc.retry) })
	}
}

func testAgentEtcdLock(t *testing.T, watch bool, retry time.Duration) {
	cs := newChannelServer(t)
	cs.publish(t, "1.1.0", 10)
	mem := newMemKV()
	var kv rebootlock.KV = mem
	if !watch {
		kv = noWatchKV{mem}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s1, s2 := newFakeSlots(t, "a"), newFakeSlots(t, "a")
	st1 := t.TempDir()
	rb1, rb2 := &fakeReboot{}, &fakeReboot{}
	a1 := cs.agent(t, st1, "m1", "1.0.0", s1, rb1, kv, StrategyEtcdLock)
	a2 := cs.agent(t, t.TempDir(), "m2", "1.0.0", s2, rb2, kv, StrategyBestEffort)
	a2.cfg.LockRetry = retry
	if err := a1.CheckOnce(ctx); err != nil {
		t.Fatal(err)
	}
	sem := &rebootlock.Semaphore{KV: kv}
	if st, _ := sem.Status(ctx); len(st.Holders) != 1 || st.Holders[0] != "m1" {
		t.Fatalf("m1 rebooted without holding the lock: %+v", st)
	}
	done2 := make(chan error, 1)
	go func() { done2 <- a2.CheckOnce(ctx) }()
	for a2.Status().Phase != node.PhaseWaitingLock {
		time.Sleep(time.Millisecond)
	}
	if rb2.count() != 0 {
		t.Fatal("m2 rebooted while m1 held the only slot")
	}
	// m1 comes back on slot b, healthy after a while.
	s1.running = "b"
	a1 = cs.agent(t, st1, "m1", "1.1.0", s1, rb1, kv, StrategyEtcdLock)
	healthy := make(chan struct{})
	a1.Healthy = func(ctx context.Context) error { <-healthy; return nil }
	after := make(chan error, 1)
	go func() { after <- a1.AfterBoot(ctx) }()
	time.Sleep(20 * time.Millisecond) // m2 keeps polling the semaphore meanwhile
	if rb2.count() != 0 {
		t.Fatal("m2 rebooted before m1 was healthy")
	}
	close(healthy)
	if err := <-after; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done2:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // against a retry of an hour
		t.Fatal("m2 still waits for the lock m1 released: the release did not wake it")
	}
	if rb2.count() != 1 {
		t.Fatal("m2 did not reboot after m1 released the lock")
	}
	if st, _ := sem.Status(ctx); len(st.Holders) != 1 || st.Holders[0] != "m2" {
		t.Fatalf("semaphore after m1's release %+v", st)
	}
	// etcd-lock without a cluster is an error, not a silent reboot.
	a3 := cs.agent(t, t.TempDir(), "m3", "1.0.0", newFakeSlots(t, "a"), &fakeReboot{}, nil, StrategyEtcdLock)
	if err := a3.CheckOnce(ctx); err == nil {
		t.Fatal("etcd-lock without KV rebooted")
	}
}

// flakyKV fails its first n calls, like a KV between leaders.
type flakyKV struct {
	*memKV
	mu sync.Mutex
	n  int
}

func (f *flakyKV) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n > 0 {
		f.n--
		return errors.New("client: etcd member http://127.0.0.1:2379 has no leader")
	}
	return nil
}

func (f *flakyKV) Get(ctx context.Context, key string) (string, uint64, error) {
	if err := f.fail(); err != nil {
		return "", 0, err
	}
	return f.memKV.Get(ctx, key)
}

// TestAgentWaitsForKV: with the KV briefly unavailable, an etcd-lock node
// keeps waiting for the lock and never reboots without it.
func TestAgentWaitsForKV(t *testing.T) {
	cs := newChannelServer(t)
	cs.publish(t, "1.1.0", 10)
	kv := &flakyKV{memKV: newMemKV(), n: 3}
	rb := &fakeReboot{}
	a := cs.agent(t, t.TempDir(), "m1", "1.0.0", newFakeSlots(t, "a"), rb, kv, StrategyBestEffort)
	rb.hook = func() {
		if st, _ := (&rebootlock.Semaphore{KV: kv.memKV}).Status(context.Background()); len(st.Holders) != 1 {
			t.Errorf("rebooted without the lock: %+v", st)
		}
	}
	if err := a.CheckOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rb.count() != 1 || kv.n != 0 {
		t.Fatalf("reboots %d, KV failures left %d", rb.count(), kv.n)
	}
}

// TestAgentDelta: a node running the delta's base downloads the delta, not
// the full USR, and ends with the same slot content; a node whose running
// slot differs from the base falls back to the full USR.
func TestAgentDelta(t *testing.T) {
	cs := newChannelServer(t)
	base := make([]byte, 4<<20)
	rand.New(rand.NewSource(3)).Read(base)
	cs.publishUSR(t, "1.0.0", "", base, 3)
	next := append(append(append([]byte(nil), base[:1<<20]...), []byte("a new file in /usr")...), base[1<<20:]...)
	r11 := cs.publishUSR(t, "1.1.0", "1.0.0", next, 4)

	for _, tc := range []struct {
		name      string
		slotA     []byte
		wantDelta bool
	}{{"running the base", base, true}, {"running something else", data(9, 4<<20), false}} {
		t.Run(tc.name, func(t *testing.T) {
			slots := newFakeSlots(t, "a")
			os.WriteFile(slots.usr("a"), append(append([]byte(nil), tc.slotA...), 0xee, 0xee), 0o600)
			os.WriteFile(slots.usr("b"), make([]byte, 5<<20), 0o600)
			before := len(cs.requested())
			a := cs.agent(t, t.TempDir(), "m1", "1.0.0", slots, &fakeReboot{}, nil, StrategyReboot)
			if err := a.CheckOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(slots.usr("b"))
			if !bytes.Equal(got[:len(r11.usr)], r11.usr) {
				t.Fatal("slot b does not hold 1.1.0's USR")
			}
			var full, delta bool
			for _, p := range cs.requested()[before:] {
				full = full || p == "/1.1.0/usr"
				delta = delta || strings.HasSuffix(p, ".delta")
			}
			if delta != tc.wantDelta || full == tc.wantDelta {
				t.Fatalf("requests %v: delta %v, full %v", cs.requested()[before:], delta, full)
			}
			if h := a.Status().History; !strings.Contains(h[len(h)-1].Detail, "delta") == tc.wantDelta {
				t.Fatalf("history %+v", h)
			}
		})
	}
}

// TestAgentMarkedGoodNotReapplied: a release whose /usr reports another
// version (os-release VERSION 1.0.0, channel version 1.1.0) is marked good
// on slot b; later checks, in the same pithd and after a restart, leave it
// there instead of writing it to slot a as if it were newer than itself.
func TestAgentMarkedGoodNotReapplied(t *testing.T) {
	cs := newChannelServer(t)
	cs.publish(t, "1.0.0", 1)
	cs.publish(t, "1.1.0", 10)
	ctx := context.Background()
	state := t.TempDir()
	slots := newFakeSlots(t, "a")
	rb := &fakeReboot{}
	a := cs.agent(t, state, "m1", "1.0.0", slots, rb, nil, StrategyReboot)
	if err := a.CheckOnce(ctx); err != nil || rb.count() != 1 {
		t.Fatalf("1.1.0 not applied: %v, %d reboots", err, rb.count())
	}
	slots.running = "b"
	for i := range 2 {
		a = cs.agent(t, state, "m1", "1.0.0", slots, rb, nil, StrategyReboot)
		if err := a.AfterBoot(ctx); err != nil {
			t.Fatal(err)
		}
		n := len(slots.events())
		if err := a.CheckOnce(ctx); err != nil || len(slots.events()) != n || rb.count() != 1 {
			t.Fatalf("pithd start %d: 1.1.0 applied again: %v, slot operations %v, %d reboots", i+1, err, slots.events()[n:], rb.count())
		}
	}
	if ev := slots.events(); ev[len(ev)-1] != "good b" {
		t.Fatalf("slot operations %v, want b marked good last", ev)
	}
	cs.publish(t, "1.2.0", 20)
	if err := a.CheckOnce(ctx); err != nil || rb.count() != 2 {
		t.Fatalf("1.2.0 not applied: %v, %d reboots", err, rb.count())
	}
}
