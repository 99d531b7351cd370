package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisionhq/provision/state"
)

// heldLock is a lock this backend holds: the lease its key hangs on, and
// the keepalive that renews it.
type heldLock struct {
	lease clientv3.LeaseID
	stop  context.CancelFunc // ends the keepalive
}

// Lock takes the state lock without waiting: it creates the lock key, with
// info as its value, on a fresh lease that is kept alive while the lock is
// held. If the key exists it fails at once with a *state.LockError naming
// the holder. A holder that dies without Unlock stops renewing its lease,
// and etcd deletes the key within LockTTL. An empty info.ID gets a fresh one.
func (b *Backend) Lock(ctx context.Context, info state.LockInfo) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("lock state in etcd %s: %w", b.lockKey, err)
	}
	ctx, cancel := b.call(ctx)
	defer cancel()
	if info.ID == "" {
		info.ID = state.NewLineage()
	}
	value, err := json.Marshal(info)
	if err != nil {
		return "", fmt.Errorf("lock state in etcd %s: encode holder: %w", b.lockKey, err)
	}
	grant, err := b.client.Grant(ctx, b.lockTTL)
	if err != nil {
		return "", fmt.Errorf("lock state in etcd %s: grant lease: %w", b.lockKey, err)
	}
	txn, err := b.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(b.lockKey), "=", 0)).
		Then(clientv3.OpPut(b.lockKey, string(value), clientv3.WithLease(grant.ID))).
		Else(clientv3.OpGet(b.lockKey)).
		Commit()
	if err != nil || !txn.Succeeded {
		b.revokeUnused(ctx, grant.ID)
	}
	if err != nil {
		return "", fmt.Errorf("lock state in etcd %s: %w", b.lockKey, err)
	}
	if !txn.Succeeded {
		return "", &state.LockError{Info: holder(txn)}
	}

	kctx, stop := context.WithCancel(b.life)
	alive, err := b.client.KeepAlive(kctx, grant.ID)
	if err != nil {
		stop()
		b.revokeUnused(ctx, grant.ID)
		return "", fmt.Errorf("lock state in etcd %s: keep lease alive: %w", b.lockKey, err)
	}
	go b.keepAlive(kctx, alive, info.ID)

	h := &heldLock{lease: grant.ID, stop: stop}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.release(ctx, h)
		return "", fmt.Errorf("lock state in etcd %s: %w", b.lockKey, errClosed)
	}
	b.held[info.ID] = h
	b.mu.Unlock()
	return info.ID, nil
}

// keepAlive drains the lease's keepalive responses until Unlock or Close
// ends ctx, or the lease is lost. A lost lease means another process may
// take the lock while this one still thinks it holds it; writes stay safe
// (Write refuses a stale document) but the operator should know.
func (b *Backend) keepAlive(ctx context.Context, alive <-chan *clientv3.LeaseKeepAliveResponse, id string) {
	for range alive {
	}
	if ctx.Err() == nil {
		b.log.Warn("state lock lost: its etcd lease expired while held", "key", b.lockKey, "lock_id", id)
	}
}

// holder decodes the LockInfo from the Else branch of Lock's transaction;
// unreadable info is an unknown holder, not an error, since the lock is
// held either way.
func holder(txn *clientv3.TxnResponse) state.LockInfo {
	var info state.LockInfo
	if len(txn.Responses) == 0 {
		return info
	}
	if kvs := txn.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		json.Unmarshal(kvs[0].Value, &info)
	}
	return info
}

// revokeUnused drops a lease that holds nothing. Failing is harmless (it
// expires within LockTTL), hence no error; ctx may already be done.
func (b *Backend) revokeUnused(ctx context.Context, lease clientv3.LeaseID) {
	rctx, cancel := b.call(context.WithoutCancel(ctx))
	defer cancel()
	if _, err := b.client.Revoke(rctx, lease); err != nil {
		b.log.Debug("revoke unused etcd lease", "lease", int64(lease), "err", err)
	}
}

// Unlock releases the lock taken with id by revoking its lease, which
// deletes the lock key. It ignores ctx's cancellation (not its values): it
// typically runs deferred after an interrupt cancelled ctx, and must
// release anyway. If the lease had already expired, the lock was lost while
// held, and Unlock says so with state.ErrNotLocked.
func (b *Backend) Unlock(ctx context.Context, id string) error {
	b.mu.Lock()
	h, ok := b.held[id]
	delete(b.held, id)
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("unlock state in etcd %s: id %q: %w", b.lockKey, id, state.ErrNotLocked)
	}
	if err := b.release(context.WithoutCancel(ctx), h); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("unlock state in etcd %s: the lock's lease expired while it was held, so another process may have taken it: %w", b.lockKey, state.ErrNotLocked)
		}
		return fmt.Errorf("unlock state in etcd %s: %w (the lock frees itself within %ds)", b.lockKey, err, b.lockTTL)
	}
	return nil
}

// release stops renewing h's lease and revokes it.
func (b *Backend) release(ctx context.Context, h *heldLock) error {
	h.stop()
	ctx, cancel := b.call(ctx)
	defer cancel()
	_, err := b.client.Revoke(ctx, h.lease)
	return err
}
