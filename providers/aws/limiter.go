package aws

import (
	"context"
	"sync"
	"time"
)

// tokenBucket is the Provider's client-side rate limit: rate tokens a
// second, at most burst saved up. Wait reserves a token and sleeps until it
// is due, so callers are served in arrival order.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate, burst float64) *tokenBucket {
	return &tokenBucket{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

// Wait blocks until a token is available or ctx ends.
func (b *tokenBucket) Wait(ctx context.Context) error {
	b.mu.Lock()
	now := time.Now()
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
	b.last = now
	b.tokens-- // may go negative: a reservation on future tokens
	var wait time.Duration
	if b.tokens < 0 {
		wait = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if wait == 0 {
		return ctx.Err()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		b.mu.Lock()
		b.tokens++ // give the reservation back
		b.mu.Unlock()
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
