package update

import "github.com/pith-os/pith/rebootlock"

// The reboot lock is package rebootlock's, shared with pithctl; these are
// its names as the agent and its callers use them.
type (
	KV             = rebootlock.KV
	Semaphore      = rebootlock.Semaphore
	SemaphoreState = rebootlock.SemaphoreState
	EtcdKV         = rebootlock.EtcdKV
)

// SemaphoreKey is locksmith's default reboot semaphore key.
const SemaphoreKey = rebootlock.SemaphoreKey

// Errors of the KV and the semaphore (rebootlock's).
var (
	ErrKeyNotFound   = rebootlock.ErrKeyNotFound
	ErrKeyExists     = rebootlock.ErrKeyExists
	ErrCompareFailed = rebootlock.ErrCompareFailed
	ErrNoSlots       = rebootlock.ErrNoSlots
	ErrNotHolder     = rebootlock.ErrNotHolder
)

// GroupSemaphoreKey is rebootlock.GroupSemaphoreKey.
func GroupSemaphoreKey(group string) string { return rebootlock.GroupSemaphoreKey(group) }

// NewEtcdKV is rebootlock.NewEtcdKV.
func NewEtcdKV(endpoints []string) (*EtcdKV, error) { return rebootlock.NewEtcdKV(endpoints) }
