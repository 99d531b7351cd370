package state

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kinds of state errors callers act on; classify with errors.Is/As.
var (
	// ErrLocked: another apply holds the lock. The error is a *LockError
	// naming the holder.
	ErrLocked = errors.New("state is locked")
	// ErrNotLocked: Unlock with an id that does not hold the lock.
	ErrNotLocked = errors.New("state lock is not held with that id")
	// ErrUnsupportedVersion: the stored document was written by a newer
	// provision, or is older than any migration we carry.
	ErrUnsupportedVersion = errors.New("unsupported state version")
	// ErrStale: the state being written was read before another write;
	// writing it would lose that write. Read again and reapply.
	ErrStale = errors.New("state changed since it was read")
	// ErrLineageMismatch: the state being written belongs to a different
	// lineage than the stored one, i.e. to another cluster's state.
	ErrLineageMismatch = errors.New("state lineage mismatch")
	// ErrInvalid: the document breaks an invariant (duplicate machine IDs…).
	ErrInvalid = errors.New("invalid state")
)

// LockError is returned by Lock when someone else holds the lock. It
// matches ErrLocked with errors.Is.
type LockError struct {
	Info LockInfo // the holder, as far as it could be read; may be zero
}

func (e *LockError) Error() string {
	var b strings.Builder
	b.WriteString("state is locked")
	if e.Info.Who != "" || e.Info.PID != 0 {
		who := e.Info.Who
		if who == "" {
			who = "an unknown user"
		}
		fmt.Fprintf(&b, " by %s (pid %d", who, e.Info.PID)
		if e.Info.Operation != "" {
			fmt.Fprintf(&b, ", %q", e.Info.Operation)
		}
		b.WriteString(")")
		if !e.Info.Created.IsZero() {
			fmt.Fprintf(&b, " since %s", e.Info.Created.UTC().Format(time.RFC3339))
		}
	} else {
		b.WriteString(" by another process (holder unknown)")
	}
	b.WriteString("; wait for it to finish, or if that process is gone the lock is released automatically")
	return b.String()
}

// Is makes errors.Is(err, ErrLocked) true for a *LockError.
func (e *LockError) Is(target error) bool { return target == ErrLocked }
