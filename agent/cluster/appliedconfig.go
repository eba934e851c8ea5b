package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// appliedConfig is the last raft configuration entry this node applied.
// raft.GetConfiguration returns the latest one, which takes effect in
// raft the moment it is appended, before it commits: a member being added
// shows there while its addition may still fail (etcd lists a member in
// its stats only once the change is applied).
type appliedConfig struct {
	mu    sync.Mutex
	ok    bool
	index uint64
	conf  raft.Configuration
}

func (a *appliedConfig) set(index uint64, c raft.Configuration) {
	a.mu.Lock()
	a.ok, a.index, a.conf = true, index, c.Clone()
	a.mu.Unlock()
}

func (a *appliedConfig) get() (raft.Configuration, uint64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conf.Clone(), a.index, a.ok
}

// forget drops the entry: a restored snapshot carries its configuration
// in raft's metadata, not through the FSM.
func (a *appliedConfig) forget() {
	a.mu.Lock()
	a.ok = false
	a.mu.Unlock()
}

// StoreConfiguration is raft's ConfigurationStore: raft calls it when it
// applies a configuration entry, in log order with Apply. Like a command,
// the entry is applied only once it is on this node's disk.
func (f *fsm) StoreConfiguration(index uint64, c raft.Configuration) {
	if f.durable != nil {
		if err := f.durable(index); err != nil {
			return // stopping (Apply panics on the other errors)
		}
	}
	f.config.set(index, c)
	f.applied.set(index)
}

// appliedConfiguration is the configuration of the last configuration
// entry this node applied. Entries restored from a snapshot reach raft
// but not the FSM: until the next configuration entry is applied after
// one, raft's latest stands in (hashicorp/raft does not expose its
// committed configuration, nor the latest one's index).
func (n *Node) appliedConfiguration() (raft.Configuration, error) {
	if c, _, ok := n.fsm.config.get(); ok {
		return c, nil
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, err
	}
	return f.Configuration(), nil
}
