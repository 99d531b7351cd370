package autoscaler

import (
	"errors"
	"sync"
	"time"

	"github.com/provisionhq/provision/providers"
)

// Default backoff delays: a pool that hit quota or capacity is skipped for 30 s,
// doubling on each further failure up to 10 min, long enough for a cloud's
// capacity to come back without hammering it.
const (
	DefaultBackoffInitial = 30 * time.Second
	DefaultBackoffMax     = 10 * time.Minute
)

// Backoff tracks pools that cannot grow now because their cloud returned a
// quota or capacity error, so a decision skips them and fails over to the next
// pool that fits. The zero value is ready to use with the defaults; it is safe
// for concurrent use.
type Backoff struct {
	Initial time.Duration    // 0: DefaultBackoffInitial
	Max     time.Duration    // 0: DefaultBackoffMax
	Now     func() time.Time // nil: time.Now; injected by tests

	mu    sync.Mutex
	pools map[string]backoffEntry
}

type backoffEntry struct {
	until time.Time
	delay time.Duration
	cause error
}

func (b *Backoff) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Failed records a failed scale-up of pool. Only quota and capacity errors
// back the pool off (a throttled or invalid request says nothing about the
// pool's room); it reports whether the pool is now backed off. Each failure
// doubles the delay, up to Max, until Succeeded.
func (b *Backoff) Failed(pool string, err error) bool {
	var cause error
	switch {
	case errors.Is(err, providers.ErrQuota):
		cause = providers.ErrQuota
	case errors.Is(err, providers.ErrCapacity):
		cause = providers.ErrCapacity
	default:
		return false
	}
	initial, ceiling := cmpOr(b.Initial, DefaultBackoffInitial), cmpOr(b.Max, DefaultBackoffMax)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pools == nil {
		b.pools = make(map[string]backoffEntry)
	}
	e, ok := b.pools[pool]
	if ok {
		e.delay = min(e.delay*2, ceiling)
	} else {
		e.delay = min(initial, ceiling)
	}
	e.until, e.cause = b.now().Add(e.delay), cause
	b.pools[pool] = e
	return true
}

// Succeeded forgets the pool's failures: its next failure starts at Initial.
func (b *Backoff) Succeeded(pool string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.pools, pool)
}

// BackedOff says until when a pool is skipped and why.
type BackedOff struct {
	Until time.Time
	Cause error // providers.ErrQuota or providers.ErrCapacity
}

// Status reports whether pool is backed off now.
func (b *Backoff) Status(pool string) (BackedOff, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.pools[pool]
	if !ok || !b.now().Before(e.until) {
		return BackedOff{}, false
	}
	return BackedOff{Until: e.until, Cause: e.cause}, true
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
