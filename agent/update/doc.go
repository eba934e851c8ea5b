// Package update is pithd's update agent: it follows a release channel,
// applies releases to the inactive slot, and reboots by locksmith's
// strategies (reboot, etcd-lock, best-effort, off) inside reboot windows,
// holding a slot of locksmith's reboot semaphore in the cluster's KV.
package update
