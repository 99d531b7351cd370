// Package retry owns the one retry loop everything in provision uses:
// exponential backoff with full jitter, bounded by the caller's context.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Policy is a backoff schedule. The zero value is usable (see defaults).
type Policy struct {
	Initial     time.Duration // first delay; default 250ms
	Max         time.Duration // cap on one delay; default 10s
	MaxAttempts int           // 0 means until ctx is done
	// MaxRetryAfter caps a server's Retry-After hint (see RetryAfterer);
	// default 30s, so a confused server cannot park a run for an hour.
	MaxRetryAfter time.Duration
}

// RetryAfterer is an error that carries the server's hint of when to try
// again (HTTP Retry-After). Do waits at least that long before the next
// attempt.
type RetryAfterer interface {
	RetryAfterHint() time.Duration
}

// Func is one attempt. done=true stops with err (nil for success); done=false
// with a non-nil err is a retryable failure; done=false with nil err means
// "not ready yet" and is retried too (a result, not an error).
type Func func(ctx context.Context) (done bool, err error)

// Do runs f until it is done, the attempts run out, or ctx ends. When ctx
// ends, the last attempt's error is returned wrapped with ctx's error so the
// caller sees why it was still failing.
func Do(ctx context.Context, p Policy, f Func) error {
	if p.Initial <= 0 {
		p.Initial = 250 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 10 * time.Second
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = 30 * time.Second
	}
	delay := p.Initial
	var last error
	for attempt := 1; ; attempt++ {
		done, err := f(ctx)
		if done {
			return err
		}
		last = err
		if p.MaxAttempts > 0 && attempt >= p.MaxAttempts {
			if last == nil {
				last = errors.New("not ready")
			}
			return fmt.Errorf("after %d attempts: %w", attempt, last)
		}
		// Full jitter spreads out many machines retrying at once.
		sleep := time.Duration(rand.Int64N(int64(delay)) + 1)
		var ra RetryAfterer
		if errors.As(last, &ra) {
			sleep = max(sleep, min(ra.RetryAfterHint(), p.MaxRetryAfter))
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			if last != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-t.C:
		}
		delay *= 2
		if delay > p.Max {
			delay = p.Max
		}
	}
}
