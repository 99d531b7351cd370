package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/provisionhq/provision/internal/retry"
)

// NewLockInfo describes this process taking the lock for operation ("up",
// "down", "autoscale"), with a fresh ID.
func NewLockInfo(operation string) LockInfo {
	return LockInfo{
		ID:        NewLineage(), // same random UUID form, unrelated meaning
		Operation: operation,
		Who:       whoAmI(),
		PID:       os.Getpid(),
		Created:   time.Now().UTC().Truncate(time.Second),
	}
}

// whoAmI is user@host; containers often lack a passwd entry, hence the
// fallbacks.
func whoAmI() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = fmt.Sprintf("uid%d", os.Getuid())
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return name + "@" + host
}

// lockWaitPolicy: a lock is held for a whole apply (minutes), so polling
// faster than every few seconds buys nothing.
var lockWaitPolicy = retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// LockWait takes the lock, retrying with backoff and jitter while someone
// else holds it, until ctx is done. Errors other than ErrLocked end it at
// once. The CLI uses Lock (fail fast); long-running services like the
// autoscaler use LockWait.
func LockWait(ctx context.Context, l Locker, info LockInfo) (string, error) {
	var id string
	var locked error // the last "held by" answer
	err := retry.Do(ctx, lockWaitPolicy, func(ctx context.Context) (bool, error) {
		var err error
		id, err = l.Lock(ctx, info)
		switch {
		case errors.Is(err, ErrLocked):
			locked = err
			return false, err
		case err != nil && locked != nil && ctx.Err() != nil:
			// The wait ran out in the middle of an attempt: what the user
			// needs is who held the lock when it was last seen.
			return true, fmt.Errorf("%w (%w)", locked, err)
		}
		return true, err
	})
	if err != nil {
		return "", fmt.Errorf("wait for state lock: %w", err)
	}
	return id, nil
}
