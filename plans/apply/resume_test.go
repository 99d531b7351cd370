package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/state"
)

// lossyConn is a session whose connection can break: from then on every
// command on it fails with cluster.ErrConnectionLost, as bootstrap.Client's
// do once their transport is gone.
type lossyConn struct {
	id string
	mu *sync.Mutex
	// broken and closed are the connection's fate, read under mu.
	broken, closed bool
}

func (c *lossyConn) Run(context.Context, string, io.Reader, io.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken || c.closed {
		return fmt.Errorf("%s: run: %w", c.id, cluster.ErrConnectionLost)
	}
	return nil
}

func (c *lossyConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

// newLossyFixture is a fixture whose engine dials through a lossyConnector.
func newLossyFixture(t *testing.T) (*fixture, *lossyConnector) {
	t.Helper()
	f := newFixture(t)
	conns := &lossyConnector{conns: map[string][]*lossyConn{}}
	f.engine.Connector = conns
	return f, conns
}

// lossyConnector dials lossyConns and keeps them, to break them and count
// the dials.
type lossyConnector struct {
	mu    sync.Mutex
	conns map[string][]*lossyConn
}

func (l *lossyConnector) Connect(_ context.Context, m state.Machine) (Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &lossyConn{id: m.ID, mu: &l.mu}
	l.conns[m.ID] = append(l.conns[m.ID], c)
	return c, nil
}

// cut breaks r, a session the engine handed out, and returns the error a
// protocol over it would see: a command's (cluster.ErrConnectionLost), or
// the Docker API's plain EOF.
func (l *lossyConnector) cut(r cluster.Runner, plainEOF bool) error {
	c := r.(*lossyConn)
	l.mu.Lock()
	c.broken = true
	l.mu.Unlock()
	if plainEOF {
		return fmt.Errorf("%s: Post \"http://docker/swarm/join\": %w", c.id, io.EOF)
	}
	return fmt.Errorf("%s: step install-runtime: %w", c.id, cluster.ErrConnectionLost)
}

func (l *lossyConnector) dials(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns[id])
}

// cutDriver breaks a connection once, at the driver call cutAt, before it
// would have run.
type cutDriver struct {
	*fakeDriver
	conns *lossyConnector
	cutAt string // "init", "credential" (the manager's session) or "join"
	once  sync.Once
}

func (d *cutDriver) cut(op string, r cluster.Runner) (err error) {
	if op == d.cutAt {
		d.once.Do(func() { err = d.conns.cut(r, true) })
	}
	return err
}

func (d *cutDriver) Init(ctx context.Context, n cluster.Node) error {
	if err := d.cut("init", n.Run); err != nil {
		return err
	}
	return d.fakeDriver.Init(ctx, n)
}

func (d *cutDriver) Credential(ctx context.Context, mgr cluster.Node, role string) (cluster.Credential, error) {
	if err := d.cut("credential", mgr.Run); err != nil {
		return cluster.Credential{}, err
	}
	return d.fakeDriver.Credential(ctx, mgr, role)
}

func (d *cutDriver) Join(ctx context.Context, n, mgr cluster.Node, c cluster.Credential) error {
	if err := d.cut("join", n.Run); err != nil {
		return err
	}
	return d.fakeDriver.Join(ctx, n, mgr, c)
}

// TestApplyResumesAfterLostConnection breaks one machine's SSH connection
// once in each stage after its creation: the same Apply dials the machine
// again, runs the stage again over the new connection, and converges; the
// broken session is closed. A connection broken under the Docker API shows
// only as a plain EOF: the engine finds it broken by asking it.
func TestApplyResumesAfterLostConnection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cutAt string // prepare, init, credential, join
		whose string // the pool of the machine whose connection breaks
	}{
		{name: "runtime step of the manager", cutAt: "prepare", whose: "managers"},
		{name: "runtime step of a worker", cutAt: "prepare", whose: "workers"},
		{name: "swarm init on the first manager", cutAt: "init", whose: "managers"},
		{name: "join token from the manager", cutAt: "credential", whose: "managers"},
		{name: "join of a worker", cutAt: "join", whose: "workers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, conns := newLossyFixture(t)
			f.engine.Driver = &cutDriver{fakeDriver: f.driver, conns: conns, cutAt: tt.cutAt}
			var (
				once    sync.Once
				victim  string
				prepMu  sync.Mutex
				prepped = map[string]int{}
			)
			f.engine.Prepare = func(_ context.Context, m state.Machine, r cluster.Runner) (err error) {
				prepMu.Lock()
				prepped[m.ID]++
				prepMu.Unlock()
				if tt.cutAt == "prepare" && m.Pool == tt.whose {
					once.Do(func() { victim, err = m.ID, conns.cut(r, false) })
				}
				return err
			}
			rep, err := f.engine.Apply(t.Context(), testPlan(1, 1))
			if err != nil {
				t.Fatalf("apply with a connection cut at %s: %v", tt.cutAt, err)
			}
			if len(rep.Failed) != 0 || rep.Created != 2 {
				t.Fatalf("report: %+v, want 2 created and none failed", rep)
			}
			st := f.backend.Snapshot()
			for _, m := range st.Machines {
				if m.Phase != state.PhaseJoined {
					t.Errorf("%s is %s, want joined", m.ID, m.Phase)
				}
				if m.Pool == tt.whose {
					victim = m.ID
				}
			}
			// Two dials come with every machine (the runtime stage logs in
			// again for the docker group); the broken one adds a third.
			if n := conns.dials(victim); n != 3 {
				t.Errorf("%s dialed %d times, want 3 (one more for the broken connection)", victim, n)
			}
			conns.mu.Lock()
			for id, cs := range conns.conns {
				for i, c := range cs {
					if c.broken && !c.closed {
						t.Errorf("%s: broken connection %d left open", id, i)
					}
				}
			}
			conns.mu.Unlock()
			if tt.cutAt == "prepare" && prepped[victim] != 2 {
				t.Errorf("%s prepared %d times, want 2 (the cut run, then its resume)", victim, prepped[victim])
			}
		})
	}
}

// TestApplyDoesNotResumeOtherFailures: a stage that fails on its own, its
// connection fine, fails the machine at once: resuming is for broken
// connections only.
func TestApplyDoesNotResumeOtherFailures(t *testing.T) {
	t.Parallel()
	f, _ := newLossyFixture(t)
	inits := 0
	f.engine.Driver = &failingInit{fakeDriver: f.driver, calls: &inits}
	rep, err := f.engine.Apply(t.Context(), testPlan(1, 0))
	if err == nil || len(rep.Failed) != 1 || rep.Failed[0].Stage != StageJoin {
		t.Fatalf("apply with a failing init: %v, report %+v; want the manager failed at join", err, rep)
	}
	if inits != 1 {
		t.Fatalf("init ran %d times, want 1", inits)
	}
}

type failingInit struct {
	*fakeDriver
	calls *int
}

func (d *failingInit) Init(context.Context, cluster.Node) error {
	*d.calls++
	return errors.New("swarm init: it is a worker of another swarm")
}

// TestApplyResumesABoundedNumberOfTimes: a machine whose every connection
// breaks under the runtime stage fails it after maxResumes new ones, well
// before the stage's deadline.
func TestApplyResumesABoundedNumberOfTimes(t *testing.T) {
	t.Parallel()
	f, conns := newLossyFixture(t)
	prepared := 0
	f.engine.Prepare = func(_ context.Context, _ state.Machine, r cluster.Runner) error {
		prepared++
		return conns.cut(r, false)
	}
	rep, err := f.engine.Apply(t.Context(), testPlan(1, 0))
	if !errors.Is(err, cluster.ErrConnectionLost) || len(rep.Failed) != 1 || rep.Failed[0].Stage != StageRuntime {
		t.Fatalf("apply on a machine that drops every connection: %v, report %+v; want the runtime stage failed, connection lost", err, rep)
	}
	if prepared != maxResumes+1 {
		t.Fatalf("prepared %d times, want %d (the first try and maxResumes more)", prepared, maxResumes+1)
	}
}

// lossyRotator breaks the connection once at one point of the host key
// rotation (the points TestHostKeyRotationResumesAfterKill kills a run at).
type lossyRotator struct {
	*fakeHosts
	at   string // "after stage", "before install", …
	once sync.Once
}

func (l *lossyRotator) cut(point string) (err error) {
	if point == l.at {
		l.once.Do(func() { err = fmt.Errorf("rotate: %w", cluster.ErrConnectionLost) })
	}
	return err
}

func (l *lossyRotator) Stage(ctx context.Context, r cluster.Runner) (string, error) {
	if err := l.cut("before stage"); err != nil {
		return "", err
	}
	next, err := l.fakeHosts.Stage(ctx, r)
	if err == nil {
		err = l.cut("after stage")
	}
	return next, err
}

func (l *lossyRotator) Install(ctx context.Context, r cluster.Runner, next string) (bool, error) {
	if err := l.cut("before install"); err != nil {
		return false, err
	}
	ok, err := l.fakeHosts.Install(ctx, r, next)
	if err == nil {
		err = l.cut("after install")
	}
	return ok, err
}

func (l *lossyRotator) Reload(ctx context.Context, r cluster.Runner) error {
	if err := l.cut("before reload"); err != nil {
		return err
	}
	err := l.fakeHosts.Reload(ctx, r)
	if err == nil {
		err = l.cut("after reload")
	}
	return err
}

func (l *lossyRotator) Scrub(ctx context.Context, r cluster.Runner) error {
	if err := l.cut("before scrub"); err != nil {
		return err
	}
	err := l.fakeHosts.Scrub(ctx, r)
	if err == nil {
		err = l.cut("after scrub")
	}
	return err
}

// TestHostKeyRotationResumesAfterLostConnection: a connection that breaks
// at any point of the rotation is dialed again, with the key state pins or
// the one being rotated in, and the same Apply finishes the rotation.
func TestHostKeyRotationResumesAfterLostConnection(t *testing.T) {
	t.Parallel()
	for _, at := range []string{"before stage", "after stage", "before install", "after install", "after reload", "after scrub"} {
		t.Run(at, func(t *testing.T) {
			t.Parallel()
			f, h := newRotationFixture(t)
			f.engine.HostKeyRotator = &lossyRotator{fakeHosts: h, at: at}
			if _, err := f.engine.Apply(t.Context(), testPlan(1, 0)); err != nil {
				t.Fatalf("apply with the connection cut %s: %v", at, err)
			}
			checkRotated(t, f.backend, h, 1)
			if h.refused != 0 {
				t.Fatalf("%d connections refused: a redial pinned neither the old key nor the next", h.refused)
			}
		})
	}
}
