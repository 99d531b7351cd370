package etcd

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisionhq/provision/state"
)

var _ state.Backend = (*Backend)(nil)

// Read returns the stored state, migrated to state.Version; nothing stored
// is a new empty State. A corrupt document is an error, never an empty
// state: an empty state would make the next apply forget machines that
// exist.
func (b *Backend) Read(ctx context.Context) (*state.State, error) {
	ctx, cancel := b.call(ctx)
	defer cancel()
	resp, err := b.client.Get(ctx, b.stateKey)
	if err != nil {
		return nil, fmt.Errorf("read state from etcd %s: %w", b.stateKey, err)
	}
	if len(resp.Kvs) == 0 {
		return state.Empty(), nil
	}
	s, err := state.Decode(resp.Kvs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("read state from etcd %s: %w (the previous version is in %s)", b.stateKey, err, b.backupKey)
	}
	return s, nil
}

// Write stores s and, in the same transaction, the document it replaces as
// the backup. The transaction only commits if the state key has not changed
// since it was read here, so of two writers racing from the same serial
// exactly one wins and the other gets state.ErrStale, lock or no lock. On
// success s.Serial and s.Version are updated.
//
// The transaction carries both versions, so a document over about 700 KiB
// would exceed etcd's default request limit (--max-request-bytes, 1.5 MiB).
func (b *Backend) Write(ctx context.Context, s *state.State) error {
	ctx, cancel := b.call(ctx)
	defer cancel()
	resp, err := b.client.Get(ctx, b.stateKey)
	if err != nil {
		return fmt.Errorf("write state to etcd %s: %w", b.stateKey, err)
	}
	var (
		stored *state.State
		old    []byte
		rev    int64 // etcd compares a missing key's ModRevision as 0
	)
	if len(resp.Kvs) > 0 {
		kv := resp.Kvs[0]
		if stored, err = state.Decode(kv.Value); err != nil {
			return fmt.Errorf("write state to etcd %s: stored document: %w", b.stateKey, err)
		}
		old, rev = kv.Value, kv.ModRevision
	}
	next, err := state.Next(stored, s)
	if err != nil {
		return fmt.Errorf("write state to etcd %s: %w", b.stateKey, err)
	}
	data, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("write state to etcd %s: encode: %w", b.stateKey, err)
	}
	ops := []clientv3.Op{clientv3.OpPut(b.stateKey, string(data))}
	if old != nil {
		ops = append(ops, clientv3.OpPut(b.backupKey, string(old)))
	}
	txn, err := b.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(b.stateKey), "=", rev)).
		Then(ops...).
		Commit()
	if err != nil {
		return fmt.Errorf("write state to etcd %s: %w", b.stateKey, err)
	}
	if !txn.Succeeded {
		return fmt.Errorf("write state to etcd %s: %w: another writer stored a new version meanwhile", b.stateKey, state.ErrStale)
	}
	state.Commit(s, next)
	return nil
}

// Destroy deletes the state and its backup. Callers hold the lock; if this
// backend holds none, Destroy takes it for the duration, so it never
// deletes a state another process is applying.
func (b *Backend) Destroy(ctx context.Context) error {
	b.mu.Lock()
	holding := len(b.held) > 0
	b.mu.Unlock()
	if !holding {
		id, err := b.Lock(ctx, state.NewLockInfo("destroy"))
		if err != nil {
			return fmt.Errorf("destroy state in etcd %s: %w", b.base, err)
		}
		defer b.Unlock(ctx, id)
	}
	ctx, cancel := b.call(ctx)
	defer cancel()
	_, err := b.client.Txn(ctx).Then(clientv3.OpDelete(b.stateKey), clientv3.OpDelete(b.backupKey)).Commit()
	if err != nil {
		return fmt.Errorf("destroy state in etcd %s: %w", b.base, err)
	}
	return nil
}
