// Package retry owns the one polling loop bootstrap and its cluster drivers
// use: call a function until it reports done, backing off with jitter, and
// stop at the context's deadline.
package retry

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Backoff shapes the wait between attempts. The zero value is usable: it
// means Default.
type Backoff struct {
	Initial time.Duration // first wait
	Max     time.Duration // cap for one wait
	Factor  float64       // growth per attempt
	Jitter  float64       // fraction of each wait that is randomized, 0..1
}

// Default suits remote polls: quick first retries, then a steady 5 s.
var Default = Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Factor: 2, Jitter: 0.3}

// Constant polls every d with a little jitter, for waits that are not
// failures (a task draining, an engine starting).
func Constant(d time.Duration) Backoff {
	return Backoff{Initial: d, Max: d, Factor: 1, Jitter: 0.1}
}

// ErrNoDeadline is returned by Until for a context that could wait forever.
var ErrNoDeadline = errors.New("retry: context has no deadline")

// Until calls f until it returns done, returns an error (which ends the loop:
// it is permanent), or ctx ends. "Not done yet" is a result, not an error: f
// keeps the last transient failure itself if it wants to report it. When ctx
// ends first, Until returns ctx.Err(). ctx must have a deadline so no wait is
// unbounded.
func Until(ctx context.Context, b Backoff, f func(ctx context.Context) (done bool, err error)) error {
	if _, ok := ctx.Deadline(); !ok {
		return ErrNoDeadline
	}
	if b.Initial <= 0 {
		b = Default
	}
	if b.Factor < 1 {
		b.Factor = 1
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	wait := b.Initial
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		done, err := f(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		d := wait
		if b.Jitter > 0 {
			// Spread ±Jitter/2 around the wait so many pollers do not march in step.
			d = time.Duration(float64(d) * (1 - b.Jitter/2 + b.Jitter*rand.Float64()))
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		wait = min(time.Duration(float64(wait)*b.Factor), b.Max)
	}
}
