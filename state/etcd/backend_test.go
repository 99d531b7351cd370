package etcd_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisionhq/provision/state"
	"github.com/provisionhq/provision/state/etcd"
	"github.com/provisionhq/provision/state/etcd/etcdtest"
	"github.com/provisionhq/provision/state/statetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, m mode) {
		statetest.Run(t, func(t *testing.T) state.Backend { return newEnv(t, m).backend(t) })
	})
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  etcd.Config
		want string
	}{
		{"no endpoints", etcd.Config{Cluster: "c"}, etcd.EnvEndpoints},
		{"no cluster", etcd.Config{Endpoints: []string{"http://127.0.0.1:1"}}, "cluster name"},
		{"slash in cluster", etcd.Config{Endpoints: []string{"http://127.0.0.1:1"}, Cluster: "a/b"}, "cluster name"},
		{"nobody listening", etcd.Config{Endpoints: []string{"http://127.0.0.1:1"}, Cluster: "c", DialTimeout: 500 * time.Millisecond},
			"connect to etcd [http://127.0.0.1:1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			b, err := etcd.New(t.Context(), tt.cfg)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("New took %v to fail", d)
			}
		})
	}
}

// TestKeys checks the layout other tools (etcdctl, a second provision
// version) see: the document and its backup as JSON, the lock on a lease.
func TestKeys(t *testing.T) {
	t.Parallel()
	eachMode(t, testKeys)
}

func testKeys(t *testing.T, m mode) {
	e := newEnv(t, m)
	b := e.backend(t)
	ctx := t.Context()

	id, err := b.Lock(ctx, state.NewLockInfo("up"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.raw.Get(ctx, e.key("lock"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("lock key: %v, %v", resp, err)
	}
	var info state.LockInfo
	if err := json.Unmarshal(resp.Kvs[0].Value, &info); err != nil || info.ID != id || info.Operation != "up" {
		t.Errorf("lock key holds %q (%v), want the LockInfo of %s", resp.Kvs[0].Value, err, id)
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	ttl, err := e.raw.TimeToLive(ctx, lease)
	if err != nil || lease == clientv3.NoLease || ttl.GrantedTTL != int64(testTTL/time.Second) {
		t.Errorf("lock key lease %x: %+v, %v; want granted TTL %v", lease, ttl, err, testTTL)
	}

	s, err := b.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := b.Write(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for name, serial := range map[string]uint64{"state": 2, "state.backup": 1} {
		resp, err := e.raw.Get(ctx, e.key(name))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("%s: %v, %v", name, resp, err)
		}
		var got state.State
		if err := json.Unmarshal(resp.Kvs[0].Value, &got); err != nil || got.Serial != serial || got.Lineage != s.Lineage {
			t.Errorf("%s holds %s (%v), want serial %d of lineage %s", name, resp.Kvs[0].Value, err, serial, s.Lineage)
		}
	}

	if err := b.Unlock(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ttl, err := e.raw.TimeToLive(ctx, lease); err != nil || ttl.TTL != -1 {
		t.Errorf("lease after Unlock: %+v, %v; want revoked", ttl, err)
	}
	if err := b.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if resp, err := e.raw.Get(ctx, e.prefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly()); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("keys left after Unlock and Destroy: %v, %v", resp.Kvs, err)
	}
}

// TestWriteRace: writers on separate connections that all read the same
// serial, then write at once without the lock. The transaction's revision
// check must let exactly one through.
func TestWriteRace(t *testing.T) {
	t.Parallel()
	eachMode(t, testWriteRace)
}

func testWriteRace(t *testing.T, m mode) {
	const writers = 6
	e := newEnv(t, m)
	ctx := t.Context()
	seed := e.backend(t)
	s, err := seed.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.Write(ctx, s); err != nil {
		t.Fatal(err)
	}
	var backends []*etcd.Backend
	var states []*state.State
	for range writers {
		b := e.backend(t)
		s, err := b.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		backends, states = append(backends, b), append(states, s)
	}
	errs := make([]error, writers)
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := range writers {
		wg.Go(func() {
			start.Wait()
			errs[i] = backends[i].Write(ctx, states[i])
		})
	}
	start.Done()
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, state.ErrStale):
			t.Errorf("writer %d: %v, want nil or ErrStale", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d racing writers won, want exactly 1 (errors: %v)", won, writers, errs)
	}
	if got, err := seed.Read(ctx); err != nil || got.Serial != 2 {
		t.Errorf("after the race: serial %v, %v; want 2", got, err)
	}
}

// TestBadDocumentRefused: a document this provision cannot read is an
// error for Read and Write, never an empty state to overwrite it with.
// Documents do not depend on the transport: plaintext only.
func TestBadDocumentRefused(t *testing.T) {
	t.Parallel()
	etcdtest.Start(t) // one etcd for all the parallel cases
	tests := []struct {
		name string
		doc  string
		want error // nil: any error
	}{
		{"not json", "{not json", nil},
		{"no version", `{"serial": 3, "lineage": "x"}`, state.ErrUnsupportedVersion},
		{"newer version", `{"version": 99, "serial": 3, "lineage": "x"}`, state.ErrUnsupportedVersion},
		{"unknown field", `{"version": 1, "serial": 3, "lineage": "x", "extra": true}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, plaintext)
			b := e.backend(t)
			ctx := t.Context()
			if _, err := e.raw.Put(ctx, e.key("state"), tt.doc); err != nil {
				t.Fatal(err)
			}
			_, err := b.Read(ctx)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Read: got %v, want %v", err, tt.want)
			}
			if err == nil || !strings.Contains(err.Error(), "state.backup") {
				t.Errorf("Read error %v does not point at the backup", err)
			}
			if err := b.Write(ctx, &state.State{Lineage: "x", Serial: 3}); err == nil {
				t.Error("Write over an unreadable document succeeded")
			}
			if resp, err := e.raw.Get(ctx, e.key("state")); err != nil || string(resp.Kvs[0].Value) != tt.doc {
				t.Errorf("the document changed: %v, %v", resp, err)
			}
		})
	}
}

// TestLockFreedWhenHolderDies: a holder killed without Unlock keeps the
// lock until its lease expires, then anyone may take it.
func TestLockFreedWhenHolderDies(t *testing.T) {
	t.Parallel()
	eachMode(t, testLockFreedWhenHolderDies)
}

func testLockFreedWhenHolderDies(t *testing.T, m mode) {
	e := newEnv(t, m)
	b := e.backend(t)
	ctx := t.Context()
	holder := startHelper(t, e, "lock")

	_, err := b.Lock(ctx, state.NewLockInfo("up"))
	var le *state.LockError
	if !errors.As(err, &le) || le.Info.Who != "helper@subprocess" || le.Info.PID != holder.Process.Pid {
		t.Fatalf("Lock while the helper holds it: got %v, want a LockError naming helper@subprocess pid %d", err, holder.Process.Pid)
	}

	if err := holder.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	holder.Wait()
	if _, err := b.Lock(ctx, state.NewLockInfo("up")); !errors.Is(err, state.ErrLocked) {
		t.Fatalf("Lock right after the holder died: got %v, want ErrLocked until its lease expires", err)
	}
	var id string
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for id == "" {
		select {
		case <-tick.C:
		case <-time.After(testTTL + margin):
			t.Fatalf("lock still held %v after its holder died (TTL %v)", time.Since(killed), testTTL)
		}
		id, err = b.Lock(ctx, state.NewLockInfo("up"))
		if err != nil && !errors.Is(err, state.ErrLocked) {
			t.Fatal(err)
		}
	}
	t.Logf("lock free %v after its holder was killed (TTL %v)", time.Since(killed).Round(time.Millisecond), testTTL)
	if err := b.Unlock(ctx, id); err != nil {
		t.Error(err)
	}
}

// TestUnlockAfterLeaseLost: a holder whose lease expired (revoked here, as
// etcd does on expiry) is told at Unlock that it lost the lock.
func TestUnlockAfterLeaseLost(t *testing.T) {
	t.Parallel()
	eachMode(t, testUnlockAfterLeaseLost)
}

func testUnlockAfterLeaseLost(t *testing.T, m mode) {
	e := newEnv(t, m)
	b := e.backend(t)
	ctx := t.Context()
	id, err := b.Lock(ctx, state.NewLockInfo("up"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.raw.Get(ctx, e.key("lock"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("lock key: %v, %v", resp, err)
	}
	if _, err := e.raw.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	other := e.backend(t)
	oid, err := other.Lock(ctx, state.NewLockInfo("down"))
	if err != nil {
		t.Fatalf("Lock once the holder's lease is gone: %v", err)
	}
	defer other.Unlock(ctx, oid)
	if err := b.Unlock(ctx, id); !errors.Is(err, state.ErrNotLocked) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Unlock of a lost lock: got %v, want ErrNotLocked saying the lease expired", err)
	}
	if _, err := b.Lock(ctx, state.NewLockInfo("up")); !errors.Is(err, state.ErrLocked) {
		t.Errorf("the lost holder's Unlock released the new holder's lock: Lock got %v", err)
	}
}

// TestCloseReleasesLocks: Close releases what is still held, so nobody
// waits out the TTL after a clean shutdown that forgot Unlock.
func TestCloseReleasesLocks(t *testing.T) {
	t.Parallel()
	eachMode(t, testCloseReleasesLocks)
}

func testCloseReleasesLocks(t *testing.T, m mode) {
	e := newEnv(t, m)
	b := e.backend(t)
	if _, err := b.Lock(t.Context(), state.NewLockInfo("autoscale")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	other := e.backend(t)
	id, err := other.Lock(t.Context(), state.NewLockInfo("up"))
	if err != nil {
		t.Fatalf("Lock after the holder's Close: %v", err)
	}
	other.Unlock(t.Context(), id)
}

func TestCancelledContext(t *testing.T) {
	t.Parallel()
	eachMode(t, testCancelledContext)
}

func testCancelledContext(t *testing.T, m mode) {
	b := newEnv(t, m).backend(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Read: %v", err)
	}
	if err := b.Write(ctx, &state.State{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Write: %v", err)
	}
	if _, err := b.Lock(ctx, state.NewLockInfo("up")); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock: %v", err)
	}
	// Unlock must work after an interrupt cancelled the apply's context.
	id, err := b.Lock(t.Context(), state.NewLockInfo("up"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, id); err != nil {
		t.Errorf("Unlock with a cancelled ctx: %v", err)
	}
}
