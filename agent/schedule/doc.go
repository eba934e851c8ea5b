// Package schedule is Pith's cluster scheduler: fleet's model (units with a
// desired state, machines with metadata, [X-Fleet] requirements) and the
// engine that the raft leader runs to place units on machines.
//
// The replicated part is State, a deterministic state machine driven by
// Commands; Store is the seam between the engine/API and whatever replicates
// those commands (MemStore in tests, the KV's raft in pithd).
package schedule
