// Package cluster runs a node's raft: the replicated log (hashicorp/raft with
// raft-boltdb and file snapshots), the peer transport (raft and forwarded
// client requests multiplexed on one port, optional mutual TLS), membership,
// and the /v2/members, /v2/stats and /health endpoints.
//
// Several state machines share the one log. Each registers under a
// Namespace; a log entry is one namespace byte followed by that namespace's
// own command bytes, and the FSM hands the bytes to the namespace's Apply.
// Snapshots hold every namespace's state, each in its own section.
package cluster
