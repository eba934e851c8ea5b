// Package kv is pithd's key-value store: etcd's v2 data model (Store: a
// tree of keys and directories with TTLs and a global index, watches with
// history) and its keys API over HTTP (Server, /v2/keys with etcd's
// errors and headers). Writes are Commands proposed to a replicated log
// through the Raft interface and applied to every replica in order, so
// replicas hold the same tree; agent/daemon binds Raft to agent/cluster,
// so this package does not import the cluster. Local runs a Store without
// replication (tests, and package discovery, the service `pith discovery
// serve` runs).
package kv
