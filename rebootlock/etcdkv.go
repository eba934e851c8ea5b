package rebootlock

import (
	"context"
	"errors"
	"fmt"

	etcd "go.etcd.io/etcd/client/v2"
)

// EtcdKV is the KV interface over the etcd v2 keys API: pithd's own KV on
// :2379, or a real etcd 2/3 with the v2 API, so the reboot semaphore is the
// same document locksmith and locksmithctl use.
type EtcdKV struct {
	Keys etcd.KeysAPI
}

// NewEtcdKV connects to the given endpoints (e.g. http://127.0.0.1:2379).
func NewEtcdKV(endpoints []string) (*EtcdKV, error) {
	c, err := etcd.New(etcd.Config{Endpoints: endpoints})
	if err != nil {
		return nil, fmt.Errorf("KV client: %w", err)
	}
	return &EtcdKV{Keys: etcd.NewKeysAPI(c)}, nil
}

func mapEtcdErr(err error) error {
	var e etcd.Error
	if errors.As(err, &e) {
		switch e.Code {
		case etcd.ErrorCodeKeyNotFound:
			return fmt.Errorf("%w: %s", ErrKeyNotFound, e.Message)
		case etcd.ErrorCodeNodeExist:
			return fmt.Errorf("%w: %s", ErrKeyExists, e.Message)
		case etcd.ErrorCodeTestFailed:
			return fmt.Errorf("%w: %s", ErrCompareFailed, e.Cause)
		}
	}
	return err
}

// Get reads a key with a quorum read, so a CAS after it compares against
// the cluster's state and not a lagging member's.
func (k *EtcdKV) Get(ctx context.Context, key string) (string, uint64, error) {
	resp, err := k.Keys.Get(ctx, key, &etcd.GetOptions{Quorum: true})
	if err != nil {
		return "", 0, mapEtcdErr(err)
	}
	return resp.Node.Value, resp.Node.ModifiedIndex, nil
}

// Create sets key if it does not exist.
func (k *EtcdKV) Create(ctx context.Context, key, value string) (uint64, error) {
	resp, err := k.Keys.Set(ctx, key, value, &etcd.SetOptions{PrevExist: etcd.PrevNoExist})
	if err != nil {
		return 0, mapEtcdErr(err)
	}
	return resp.Node.ModifiedIndex, nil
}

// CompareAndSwap sets key if it is still at prevIndex.
func (k *EtcdKV) CompareAndSwap(ctx context.Context, key, value string, prevIndex uint64) (uint64, error) {
	resp, err := k.Keys.Set(ctx, key, value, &etcd.SetOptions{PrevIndex: prevIndex})
	if err != nil {
		return 0, mapEtcdErr(err)
	}
	return resp.Node.ModifiedIndex, nil
}

// Watch waits with etcd's waitIndex for the first change of key after
// afterIndex (the member answers at once when one is in its history).
func (k *EtcdKV) Watch(ctx context.Context, key string, afterIndex uint64) error {
	_, err := k.Keys.Watcher(key, &etcd.WatcherOptions{AfterIndex: afterIndex}).Next(ctx)
	return mapEtcdErr(err)
}
