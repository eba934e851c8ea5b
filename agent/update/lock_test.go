package update

import "github.com/pith-os/pith/rebootlock"

// memKV is the in-memory KV the agent's tests lock and check health with.
type memKV = rebootlock.MemKV

func newMemKV() *memKV { return rebootlock.NewMemKV() }
