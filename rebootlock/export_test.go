package rebootlock

// CheckWaitChange lets etcdkv_test.go (package rebootlock_test, which
// imports agent/kv) run the WaitChange check over the etcd API.
var CheckWaitChange = testWaitChange
