package providers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// Kinds of provider failure the engine acts on. Providers wrap them (with %w
// or in an *Error) and callers classify with errors.Is, never by message.
var (
	// ErrThrottled: the API rate-limited us. A provider's API gate
	// (providers/gate) backs off and sends the request again until its
	// context ends: one that reaches the engine has run out of time, and
	// the engine does not retry it again.
	ErrThrottled = errors.New("throttled")
	// ErrQuota: an account quota stops this pool from growing now.
	ErrQuota = errors.New("quota exceeded")
	// ErrCapacity: the cloud has no capacity for this shape/zone now.
	ErrCapacity = errors.New("insufficient capacity")
	// ErrNotFound: the machine does not exist (or is not visible yet).
	ErrNotFound = errors.New("not found")
	// ErrInvalidSpec: the request can never succeed as written.
	ErrInvalidSpec = errors.New("invalid spec")
	// ErrUnavailable: the cloud failed the call (a 5xx) or the connection
	// broke before its answer (see ConnectionLost). The call may or may
	// not have taken effect, so a provider retries it itself (in its API
	// gate), a mutating call only in a way that cannot do it twice (a
	// client token, a request ID, a lookup by name first). One that
	// reaches the engine has spent those retries.
	ErrUnavailable = errors.New("service unavailable")
)

// Error is a cloud API failure with the details a user needs in one line.
type Error struct {
	Kind       error  // one of the Err* kinds above
	Cloud      string // "aws", "gcp", "openstack", "docker"
	Location   string // region or zone, when the cloud has one
	Pool       string
	Code       string // the cloud's own error code, e.g. "VcpuLimitExceeded"
	Message    string
	RetryAfter time.Duration // a hint from the cloud, zero when none
}

func (e *Error) Error() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s", e.Cloud)
	if e.Location != "" {
		fmt.Fprintf(&b, " %s", e.Location)
	}
	if e.Pool != "" {
		fmt.Fprintf(&b, " pool %q", e.Pool)
	}
	fmt.Fprintf(&b, ": %v", e.Kind)
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Kind }

// RetryAfterHint lets the retry loop honour the cloud's Retry-After.
func (e *Error) RetryAfterHint() time.Duration { return e.RetryAfter }

// ConnectionLost reports whether err is a connection that broke before the
// cloud's answer was read: reset by the peer, closed under the request, or
// cut off mid-answer. Whether the call took effect is unknown. The end of
// a context is not one, nor is a connection never made (a refused dial or
// an unknown host fail the same way when retried).
func ConnectionLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	for _, lost := range []error{syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, io.EOF, io.ErrUnexpectedEOF, net.ErrClosed} {
		if errors.Is(err, lost) {
			return true
		}
	}
	return false
}
