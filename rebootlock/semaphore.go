package rebootlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// SemaphoreKey is locksmith's reboot semaphore key, so locksmithctl and
// pithctl can inspect the same lock.
const SemaphoreKey = "/coreos.com/updateengine/rebootlock/semaphore"

// GroupSemaphoreKey is the key of a named reboot group's semaphore
// (locksmith's `group`); "" is the default semaphore.
func GroupSemaphoreKey(group string) string {
	if group == "" {
		return SemaphoreKey
	}
	return "/coreos.com/updateengine/rebootlock/groups/" + group + "/semaphore"
}

// KV is the part of an etcd-v2-style store the semaphore needs. Index is
// the key's modification index; CompareAndSwap succeeds only if the key is
// still at prevIndex.
type KV interface {
	Get(ctx context.Context, key string) (value string, index uint64, err error)
	// Create sets key only if it does not exist.
	Create(ctx context.Context, key, value string) (index uint64, err error)
	CompareAndSwap(ctx context.Context, key, value string, prevIndex uint64) (index uint64, err error)
}

// Errors a KV returns (wrapped or not).
var (
	ErrKeyNotFound   = errors.New("key not found")
	ErrKeyExists     = errors.New("key exists")
	ErrCompareFailed = errors.New("compare failed")
)

// Semaphore errors.
var (
	ErrNoSlots   = errors.New("reboot semaphore has no free slot")
	ErrNotHolder = errors.New("not a holder of the reboot semaphore")
	// ErrCannotWatch is WaitChange's answer for a KV that cannot watch.
	ErrCannotWatch = errors.New("the KV cannot watch keys")
)

// Watcher is a KV that can wait for a key to change, as etcd v2's
// ?wait=true&waitIndex= does. A semaphore over one wakes its waiters when
// a slot is given back instead of when their next retry comes round.
type Watcher interface {
	// Watch returns nil once key is modified at an index above
	// afterIndex (at once if it already was), or an error (ctx's, or an
	// index the KV no longer remembers).
	Watch(ctx context.Context, key string, afterIndex uint64) error
}

// NoSlotsError is Lock's ErrNoSlots with what Lock saw, so a waiter can
// watch for the next change of the document it read.
type NoSlotsError struct {
	Max     int
	Holders []string
	// Index is the semaphore's modification index when it was full.
	Index uint64
}

func (e *NoSlotsError) Error() string {
	return fmt.Sprintf("%s (max %d, held by %s)", ErrNoSlots, e.Max, strings.Join(e.Holders, ", "))
}

// Unwrap makes errors.Is(err, ErrNoSlots) hold.
func (e *NoSlotsError) Unwrap() error { return ErrNoSlots }

// SemaphoreState is locksmith's JSON document.
type SemaphoreState struct {
	Semaphore int      `json:"semaphore"`
	Max       int      `json:"max"`
	Holders   []string `json:"holders"`
}

// Semaphore is the cluster's reboot semaphore.
type Semaphore struct {
	KV  KV
	Key string // default SemaphoreKey
}

func (s *Semaphore) key() string {
	if s.Key == "" {
		return SemaphoreKey
	}
	return s.Key
}

// get reads the semaphore, creating locksmith's initial document
// (one slot, max 1) when the key does not exist yet.
func (s *Semaphore) get(ctx context.Context) (*SemaphoreState, uint64, error) {
	for {
		val, idx, err := s.KV.Get(ctx, s.key())
		if errors.Is(err, ErrKeyNotFound) {
			init, _ := json.Marshal(SemaphoreState{Semaphore: 1, Max: 1, Holders: []string{}})
			_, err := s.KV.Create(ctx, s.key(), string(init))
			if err != nil && !errors.Is(err, ErrKeyExists) {
				return nil, 0, fmt.Errorf("create reboot semaphore: %w", err)
			}
			continue // someone (maybe us) created it: read it back for its index
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read reboot semaphore: %w", err)
		}
		var st SemaphoreState
		if err := json.Unmarshal([]byte(val), &st); err != nil {
			return nil, 0, fmt.Errorf("reboot semaphore at %s is not locksmith JSON (%v); fix it with pithctl lock set-max", s.key(), err)
		}
		if st.Holders == nil {
			st.Holders = []string{}
		}
		return &st, idx, nil
	}
}

// update applies change with compare-and-swap, retrying when another
// writer got there first. change gets the document and its index.
func (s *Semaphore) update(ctx context.Context, change func(*SemaphoreState, uint64) error) (*SemaphoreState, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st, idx, err := s.get(ctx)
		if err != nil {
			return nil, err
		}
		if err := change(st, idx); err != nil {
			return st, err
		}
		b, _ := json.Marshal(st)
		_, err = s.KV.CompareAndSwap(ctx, s.key(), string(b), idx)
		if errors.Is(err, ErrCompareFailed) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update reboot semaphore: %w", err)
		}
		return st, nil
	}
}

// errAlreadyHolder stops an update without writing.
var errAlreadyHolder = errors.New("already a holder")

// Lock takes a slot for id. It is idempotent: a node that rebooted while
// holding its slot still holds it (and gives it back once healthy).
// ErrNoSlots (a *NoSlotsError) means try again later, or after
// WaitChange.
func (s *Semaphore) Lock(ctx context.Context, id string) error {
	if id == "" || strings.ContainsAny(id, " \t\n") {
		return fmt.Errorf("reboot semaphore: bad machine id %q", id)
	}
	_, err := s.update(ctx, func(st *SemaphoreState, idx uint64) error {
		if slices.Contains(st.Holders, id) {
			return errAlreadyHolder
		}
		if st.Semaphore <= 0 {
			return &NoSlotsError{Max: st.Max, Holders: st.Holders, Index: idx}
		}
		st.Semaphore--
		st.Holders = append(st.Holders, id)
		return nil
	})
	if errors.Is(err, errAlreadyHolder) {
		return nil
	}
	return err
}

// Unlock gives id's slot back (pithctl lock unlock MACHINE does this for a
// machine that died holding it).
func (s *Semaphore) Unlock(ctx context.Context, id string) error {
	_, err := s.update(ctx, func(st *SemaphoreState, _ uint64) error {
		i := slices.Index(st.Holders, id)
		if i < 0 {
			return fmt.Errorf("%w: %s", ErrNotHolder, id)
		}
		st.Holders = slices.Delete(st.Holders, i, i+1)
		st.Semaphore++
		return nil
	})
	return err
}

// SetMax changes how many machines may hold the semaphore at once, keeping
// current holders (free slots may go negative until they release, as in
// locksmith). It returns the old max.
func (s *Semaphore) SetMax(ctx context.Context, max int) (int, error) {
	if max < 0 {
		return 0, fmt.Errorf("reboot semaphore: max %d must be 0 or more", max)
	}
	old := 0
	_, err := s.update(ctx, func(st *SemaphoreState, _ uint64) error {
		old = st.Max
		st.Semaphore += max - st.Max
		st.Max = max
		return nil
	})
	return old, err
}

// Status reads the semaphore (creating it if missing, like locksmithctl).
func (s *Semaphore) Status(ctx context.Context) (*SemaphoreState, error) {
	st, _, err := s.get(ctx)
	return st, err
}

// WaitChange returns once the semaphore document changes after index (a
// NoSlotsError's Index): a holder gave its slot back, or the max changed.
// It answers ErrCannotWatch at once when the KV cannot watch; callers
// then retry on a timer, as locksmith does.
func (s *Semaphore) WaitChange(ctx context.Context, index uint64) error {
	w, ok := s.KV.(Watcher)
	if !ok {
		return ErrCannotWatch
	}
	return w.Watch(ctx, s.key(), index)
}
