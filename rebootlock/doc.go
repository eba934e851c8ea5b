// Package rebootlock is the cluster's reboot lock: locksmith's semaphore
// document in an etcd-v2-style KV (max holders, named groups), taken by the
// update agent before it reboots and inspected or released by pithctl update
// lock/unlock, as locksmithctl does. It sits outside agent/ because both the
// node and its client use it.
package rebootlock
