package swarm

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"
)

const (
	// requestTimeout bounds one non-streaming request, so a manager that
	// accepts connections but never answers (a stuck raft leader) cannot
	// stall a Snapshot when the caller's ctx has no deadline.
	requestTimeout = 30 * time.Second
	// socketHost names the engine in the client's messages; where requests
	// really go is the dial function's business.
	socketHost = "unix:///var/run/docker.sock"
)

// engine is the official Engine API client over one dial function, with
// what the client leaves out: the reason a dial failed, and an API version
// negotiation whose failure is reported rather than ignored.
type engine struct {
	api *client.Client
	err error // from building the client (a malformed pinned version)

	negotiated atomic.Bool

	mu      sync.Mutex
	dialErr error // the last dial's failure; nil after a success
}

func newEngine(dial func(ctx context.Context) (net.Conn, error), pinned string) *engine {
	e := &engine{}
	e.api, e.err = client.New(
		client.WithHost(socketHost),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := dial(ctx)
			e.mu.Lock()
			e.dialErr = err
			e.mu.Unlock()
			return conn, err
		}),
		client.WithAPIVersion(pinned),
	)
	if e.err != nil {
		e.err = fmt.Errorf("engine API client: %w", e.err)
	}
	e.negotiated.Store(strings.TrimPrefix(strings.TrimSpace(pinned), "v") != "")
	return e
}

// ready negotiates the API version once (the highest both sides speak);
// until that succeeds every request asks again.
func (e *engine) ready(ctx context.Context) error {
	if e.err != nil {
		return e.err
	}
	if e.negotiated.Load() {
		return nil
	}
	if _, err := e.api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("engine API version: %w", e.explain(err))
	}
	e.negotiated.Store(true)
	return nil
}

// explain adds the dial's own error to a connection failure: the client
// reports most as "Cannot connect to the Docker daemon", without the cause
// (an SSH channel refused, a permission denied on the socket).
func (e *engine) explain(err error) error {
	if err == nil || !client.IsErrConnectionFailed(err) {
		return err
	}
	e.mu.Lock()
	derr := e.dialErr
	e.mu.Unlock()
	if derr == nil || strings.Contains(err.Error(), derr.Error()) {
		return err
	}
	return fmt.Errorf("%w: %w", err, derr)
}

func (e *engine) close() {
	if e.api != nil {
		e.api.Close()
	}
}
