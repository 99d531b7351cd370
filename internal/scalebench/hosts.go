package scalebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/internal/retry"
	"github.com/provisionhq/provision/plans/apply"
	"github.com/provisionhq/provision/state"
)

// hosts is the model of the machines themselves: cloudsim's EC2 starts one
// (as its Backing) when it launches an instance, and the engine reaches it
// through the Connector, Preparer and cluster Driver below, each of which
// takes the time the Model says. Nothing runs: no SSH, no Docker.
type hosts struct {
	m Model

	mu     sync.Mutex
	byAddr map[string]*host
	n      int

	// The first manager's side of the cluster. Joins take serial for
	// Model.JoinSerial each, one at a time (a channel, not a mutex: in a
	// synctest bubble only a channel wait lets the clock move on).
	serial      chan struct{}
	manager     sync.Mutex
	initialized bool
	members     int

	// Concurrency seen, for the report.
	runtime, join gauge
}

// gauge counts what is in progress and the most that ever was at once.
type gauge struct {
	mu        sync.Mutex
	now, peak int
}

// enter counts one more in progress until the returned leave is called.
func (g *gauge) enter() (leave func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.now++
	g.peak = max(g.peak, g.now)
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.now--
	}
}

func (g *gauge) most() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}

type host struct {
	id       string
	launched time.Time
}

func newHosts(m Model) *hosts {
	return &hosts{m: m, byAddr: map[string]*host{}, serial: make(chan struct{}, 1)}
}

var _ cloudsim.Backing = (*hosts)(nil)

// Start is cloudsim's launch of an instance: the host boots from now on.
func (h *hosts) Start(_ context.Context, id string, _ cloudsim.Boot) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	addr := fmt.Sprintf("10.%d.%d.%d", 16+h.n/65536, h.n/256%256, h.n%256)
	h.byAddr[addr] = &host{id: id, launched: time.Now()}
	return addr, nil
}

func (h *hosts) Stop(context.Context, string) error { return nil }

// sshAt is when the host at addr first answers SSH: it runs
// Model.PendingFor after its launch (cloudsim's pending → running) and
// boots for Model.Boot more.
func (h *hosts) sshAt(addr string) (time.Time, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hs, ok := h.byAddr[addr]
	if !ok {
		return time.Time{}, fmt.Errorf("no host at %s", addr)
	}
	return hs.launched.Add(h.m.PendingFor + h.m.Boot), nil
}

var errRefused = errors.New("connection refused")

// Connect dials the machine as bootstrap's client does (the same retry
// schedule: 250 ms doubling to 5 s, full jitter): a dial before the host
// has booted is refused at once; one after it takes Model.Handshake.
func (h *hosts) Connect(ctx context.Context, m state.Machine) (apply.Conn, error) {
	if m.HostKey == "" {
		return nil, fmt.Errorf("machine %s has no pinned host key", m.ID)
	}
	up, err := h.sshAt(m.Address)
	if err != nil {
		return nil, err
	}
	err = retry.Do(ctx, retry.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second}, func(ctx context.Context) (bool, error) {
		if time.Now().Before(up) {
			return false, errRefused
		}
		return true, sleep(ctx, h.m.Handshake)
	})
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", m.Address, err)
	}
	return conn{}, nil
}

// conn is a session to a modelled host: every command succeeds at once
// (the engine sends only a no-op probe itself; the work is the Preparer's
// and the Driver's).
type conn struct{}

func (conn) Run(context.Context, string, io.Reader, io.Writer) error { return nil }
func (conn) Close() error                                            { return nil }

// Prepare installs the container runtime: Model.Runtime, each host on its
// own (the package mirror is not modelled as a shared limit).
func (h *hosts) Prepare(ctx context.Context, _ state.Machine, _ cluster.Runner) error {
	defer h.runtime.enter()()
	return sleep(ctx, h.m.Runtime)
}

// The Driver: a Swarm manager that accepts joins concurrently.

func (h *hosts) Init(ctx context.Context, _ cluster.Node) error {
	if err := sleep(ctx, h.m.Init); err != nil {
		return err
	}
	h.manager.Lock()
	h.initialized = true
	h.members = 1
	h.manager.Unlock()
	return nil
}

func (h *hosts) Credential(context.Context, cluster.Node, string) (cluster.Credential, error) {
	return cluster.NewCredential("join-token"), nil
}

// Join is a worker's join: Model.Join on the worker's side (TLS bootstrap,
// the agent's start), all workers at once, of which Model.JoinSerial is
// the manager's own work on the node (a Raft commit, a certificate), one
// node at a time.
func (h *hosts) Join(ctx context.Context, _, _ cluster.Node, c cluster.Credential) error {
	if c.Secret() != "join-token" {
		return errors.New("wrong join token")
	}
	defer h.join.enter()()
	if err := sleep(ctx, h.m.Join-h.m.JoinSerial); err != nil {
		return err
	}
	select {
	case h.serial <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-h.serial }()
	h.manager.Lock()
	ok := h.initialized
	h.manager.Unlock()
	if !ok {
		return errors.New("the manager is not initialized")
	}
	if err := sleep(ctx, h.m.JoinSerial); err != nil {
		return err
	}
	h.manager.Lock()
	h.members++
	h.manager.Unlock()
	return nil
}

func (h *hosts) Remove(context.Context, cluster.Node, cluster.Node) error { return nil }

func (h *hosts) Members(context.Context, cluster.Node) ([]cluster.Member, error) { return nil, nil }

var _ cluster.Driver = (*hosts)(nil)

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
