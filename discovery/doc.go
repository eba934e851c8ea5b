// Package discovery is the etcd-style discovery service `pith discovery
// serve` runs on a workstation: GET /new?size=N mints a token, and a new
// cluster's members register under it and find each other with the etcd
// v2 keys API, as etcd's own discovery does. It is built on agent/kv's
// store and keys API (a Local store of its own, not replicated), serves
// only the part of that API discovery needs, and keeps its tokens in a
// state file. pithd's side of the protocol is agent/cluster's Discovery.
package discovery
