package apply

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/internal/retry"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

// execute runs the changes: new and unfinished machines go through their
// pipelines concurrently; removals run after, so capacity never dips while
// a pool is being replaced.
func (r *run) execute(ctx context.Context, c *plans.Changes) error {
	t := r.e.timeouts()
	var pending []string // machines to create (new and intents)
	var resume []string  // created machines whose bootstrap is unfinished
	var deletes []state.Machine
	var rekey []string // joined machines whose host key was never rotated
	r.mu.Lock()
	// Changes computed against another state (another cluster's, or a
	// version another run has since replaced) no longer fit this one.
	if err := c.CheckState(r.st); err != nil {
		r.mu.Unlock()
		return err
	}
	for _, ch := range c.Items {
		switch ch.Action {
		case plans.NoOp:
			r.report.Unchanged++
			if b := ch.Before; b != nil && b.Phase == state.PhaseJoined && !b.HostKeyRotated && r.e.HostKeyRotator != nil {
				rekey = append(rekey, b.ID)
			}
		case plans.Create:
			m, err := r.newMachineLocked(ch)
			if err != nil {
				r.mu.Unlock()
				return err
			}
			pending = append(pending, m.ID)
			r.fresh[m.ID] = true
		case plans.Resume:
			r.report.Resumed++
			if ch.Before.Phase == state.PhaseIntent {
				pending = append(pending, ch.Before.ID)
			} else {
				resume = append(resume, ch.Before.ID)
			}
		case plans.Delete:
			deletes = append(deletes, *ch.Before)
		}
	}
	// Intent first: every ID is in state before any provider call, so a
	// crash from here on can never leak a machine.
	err := r.saveLocked(ctx)
	r.mu.Unlock()
	if err != nil {
		return err
	}

	primary, err := r.choosePrimary(pending, resume)
	if err != nil {
		return err
	}
	mgr := newManagerGate(primary)
	if primary != "" && r.isJoined(primary) {
		mgr.open(nil)
	}

	var (
		errMu sync.Mutex
		errs  []error
	)
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	sem := make(chan struct{}, r.e.parallelism())
	var g errgroup.Group // pipelines never cancel each other: one bad machine must not stop the rest
	startPipeline := func(id string) {
		g.Go(func() error {
			if err := r.pipeline(ctx, id, mgr, sem, t); err != nil {
				fail(err)
				if id == mgr.primary {
					mgr.open(err)
				}
			}
			return nil
		})
	}
	for _, id := range resume {
		startPipeline(id)
	}
	// A created machine's pipeline starts once, when its provider reports
	// it running or when its batch's Create returns, whichever is first.
	var startMu sync.Mutex
	started := map[string]bool{}
	startOnce := func(id string) {
		startMu.Lock()
		first := !started[id]
		started[id] = true
		startMu.Unlock()
		if first {
			startPipeline(id)
		}
	}
	for _, batch := range r.batches(pending) {
		g.Go(func() error {
			created, err := r.create(ctx, batch, t, startOnce)
			if err != nil {
				fail(err)
				if slices.Contains(batch.ids, mgr.primary) && !slices.Contains(created, mgr.primary) {
					mgr.open(err)
				}
			}
			for _, id := range created {
				startOnce(id)
			}
			return nil
		})
	}
	for _, id := range rekey {
		g.Go(func() error {
			r.rekey(ctx, id, sem, t)
			return nil
		})
	}
	// Nobody waits on a primary that is not being bootstrapped this run.
	if primary == "" {
		mgr.open(errors.New("the plan has no manager to join"))
	}
	_ = g.Wait()
	if len(errs) > 0 {
		return errorsOf(errs)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.remove(ctx, deletes, t)
}

func (e *Engine) parallelism() int {
	if e.Parallelism > 0 {
		return e.Parallelism
	}
	return DefaultParallelism()
}

// newMachineLocked records a new machine as an intent.
func (r *run) newMachineLocked(ch plans.Change) (*state.Machine, error) {
	id, err := newID(r.st.Cluster, ch.Pool)
	if err != nil {
		return nil, err
	}
	r.st.Machines = append(r.st.Machines, state.Machine{
		ID: id, Pool: ch.Pool, Provider: ch.Provider, Role: string(ch.Role),
		Phase: state.PhaseIntent, CreatedAt: time.Now().UTC(),
	})
	return &r.st.Machines[len(r.st.Machines)-1], nil
}

func newID(cluster, pool string) (string, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("machine id: %w", err)
	}
	return fmt.Sprintf("%s-%s-%s", cluster, pool, hex.EncodeToString(b)), nil
}

func (r *run) isJoined(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.st.Machine(id)
	return m != nil && m.Phase == state.PhaseJoined
}

// choosePrimary picks the manager everyone joins through: the oldest joined
// manager, else the first manager being bootstrapped now.
func (r *run) choosePrimary(pending, resume []string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if pm := r.st.PrimaryManager(); pm != nil {
		return pm.ID, nil
	}
	var cands []string
	for _, id := range append(append([]string{}, resume...), pending...) {
		if m := r.st.Machine(id); m != nil && m.Role == string(providers.RoleManager) {
			cands = append(cands, id)
		}
	}
	sort.Strings(cands)
	if len(cands) == 0 {
		if len(pending)+len(resume) > 0 {
			return "", errors.New("no manager is joined or being created: a cluster needs a manager pool with count ≥ 1")
		}
		return "", nil
	}
	return cands[0], nil
}

// managerGate lets joiners wait until the primary manager is ready.
type managerGate struct {
	primary string
	once    sync.Once
	ready   chan struct{}
	err     error
}

func newManagerGate(primary string) *managerGate {
	return &managerGate{primary: primary, ready: make(chan struct{})}
}

func (g *managerGate) open(err error) {
	g.once.Do(func() { g.err = err; close(g.ready) })
}

func (g *managerGate) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-g.ready:
		if g.err != nil {
			return fmt.Errorf("first manager %s failed: %w", g.primary, g.err)
		}
		return nil
	}
}

type batch struct {
	provider, pool string
	ids            []string
}

// batches groups machines to create by provider and pool: one provider call
// per pool, however many machines.
func (r *run) batches(ids []string) []batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := map[string]int{}
	var out []batch
	for _, id := range ids {
		m := r.st.Machine(id)
		key := m.Provider + "\x00" + m.Pool
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, batch{provider: m.Provider, pool: m.Pool})
		}
		out[i].ids = append(out[i].ids, id)
	}
	return out
}

// create makes one pool's machines in one provider call and returns the IDs
// that came back. Host keys are generated here: the private halves live only
// in memory until the provider has installed them. Each machine the
// provider reports running before the call returns (providers.Running) is
// recorded and given to start at once: its bootstrap does not wait for the
// slowest machine of the batch.
func (r *run) create(ctx context.Context, b batch, t Timeouts, start func(id string)) ([]string, error) {
	p, err := r.provider(ctx, b.provider)
	if err != nil {
		return nil, err
	}
	pool := r.plan.Pool(b.pool)
	if pool == nil {
		return nil, fmt.Errorf("pool %q is not in the plan", b.pool)
	}
	specs := make([]providers.MachineSpec, 0, len(b.ids))
	r.mu.Lock()
	for _, id := range b.ids {
		hk, err := r.e.HostKeys()
		if err != nil {
			r.mu.Unlock()
			return nil, fmt.Errorf("host key for %s: %w", id, err)
		}
		m := r.st.Machine(id)
		// An intent from an interrupted run gets a fresh key: the old
		// private half died with that run. Its provider may still hand
		// back a machine that run launched with the old key (a cloud's
		// idempotent create, an instance not yet visible to List), so
		// first contact accepts that key too, until the rotation.
		if m.HostKey != "" {
			m.FormerHostKeys = append(m.FormerHostKeys, m.HostKey)
			m.FormerHostKeys = m.FormerHostKeys[max(0, len(m.FormerHostKeys)-maxFormerHostKeys):]
		}
		m.HostKey, m.NextHostKey, m.HostKeyRotated = hk.Public, "", false
		specs = append(specs, providers.MachineSpec{
			ID: providers.MachineID(id), Cluster: r.st.Cluster, Pool: pool.Name, Role: pool.Role,
			Settings: pool.Settings, Labels: pool.Labels, SSHUser: r.plan.SSH.User,
			AuthorizedKeys: r.e.AuthorizedKeys, HostKey: hk, Spot: pool.Spot,
		})
	}
	err = r.saveLocked(ctx)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	for _, id := range b.ids {
		r.emit(Event{Machine: id, Pool: b.pool, Stage: StageCreate, Status: StatusStart, Detail: b.provider})
	}
	// One Create, not retried here: a provider retries a throttled or
	// failed request itself, in its API gate (providers/gate), so a
	// Create that fails has spent those retries, and the next run
	// resumes its machines from their intents.
	cctx, cancel := context.WithTimeout(ctx, t.Create)
	defer cancel()
	var earlyMu sync.Mutex
	early := map[string]providers.Machine{} // reported running during Create
	cctx = providers.WithRunning(cctx, func(pm providers.Machine) {
		id := string(pm.ID)
		earlyMu.Lock()
		_, seen := early[id]
		if !seen && slices.Contains(b.ids, id) {
			early[id] = pm
		} else {
			seen = true
		}
		earlyMu.Unlock()
		if seen {
			return
		}
		r.mu.Lock()
		setCreated(r.st.Machine(id), pm)
		r.mu.Unlock()
		r.emit(Event{Machine: id, Pool: b.pool, Stage: StageCreate, Status: StatusDone, Detail: pm.Address})
		start(id)
	})
	got, err := p.Create(cctx, specs)
	earlyMu.Lock()
	reported := maps.Clone(early)
	earlyMu.Unlock()
	byID := maps.Clone(reported) // machines already bootstrapping stay created, whatever Create says later
	for _, m := range got {
		byID[string(m.ID)] = m
	}
	var created []string
	r.mu.Lock()
	for _, id := range b.ids {
		pm, ok := byID[id]
		if !ok {
			continue
		}
		setCreated(r.st.Machine(id), pm)
		created = append(created, id)
		if r.fresh[id] {
			r.report.Created++ // counted once the provider has it, not at intent
		}
	}
	serr := r.saveLocked(ctx)
	r.mu.Unlock()
	for _, id := range b.ids {
		if _, ok := byID[id]; ok {
			if _, ok := reported[id]; !ok {
				r.emit(Event{Machine: id, Pool: b.pool, Stage: StageCreate, Status: StatusDone, Detail: byID[id].Address})
			}
		} else {
			r.emit(Event{Machine: id, Pool: b.pool, Stage: StageCreate, Status: StatusFail, Err: errString(err)})
		}
	}
	if err != nil {
		err = fmt.Errorf("create %d machines in pool %q on %s: %w", len(b.ids), b.pool, b.provider, err)
	}
	return created, errors.Join(err, serr)
}

func errString(err error) string {
	if err == nil {
		return "no machine returned"
	}
	return err.Error()
}

// pipeline bootstraps one created machine: SSH, runtime, join.
func (r *run) pipeline(ctx context.Context, id string, mgr *managerGate, sem chan struct{}, t Timeouts) error {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	released := false
	release := func() {
		if !released {
			released = true
			<-sem
		}
	}
	defer release()

	m := r.machine(id)
	stage := func(s Stage, timeout time.Duration, f func(ctx context.Context) error) error {
		r.emit(Event{Machine: id, Pool: m.Pool, Stage: s, Status: StatusStart})
		sctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		start := time.Now()
		if err := f(sctx); err != nil {
			r.emit(Event{Machine: id, Pool: m.Pool, Stage: s, Status: StatusFail, Err: err.Error()})
			return &MachineError{Machine: id, Pool: m.Pool, Stage: string(s), Err: err}
		}
		r.emit(Event{Machine: id, Pool: m.Pool, Stage: s, Status: StatusDone, Detail: time.Since(start).Round(100 * time.Millisecond).String()})
		return nil
	}

	if err := stage(StageSSH, t.SSH, func(ctx context.Context) error {
		return r.resume(ctx, StageSSH, []string{id}, func(ctx context.Context) error {
			m := r.machine(id) // a resumed rotation finds its next key here
			c, err := r.conn(ctx, m)
			if err != nil {
				return err
			}
			// The first verified connection is the one the user-data key is
			// good for: rotate it before anything else runs on the machine.
			rotate, err := r.rotates(ctx, m)
			if err != nil || !rotate {
				return err
			}
			nc, err := r.rotateHostKey(ctx, id, c)
			if err != nil {
				return err
			}
			r.replaceConn(id, c, nc)
			return nil
		})
	}); err != nil {
		return err
	}
	m = r.machine(id) // the pinned key may be a new one
	if phaseBefore(m.Phase, state.PhaseReady) {
		if err := stage(StageRuntime, t.Runtime, func(ctx context.Context) error {
			return r.resume(ctx, StageRuntime, []string{id}, func(ctx context.Context) error {
				conn, err := r.conn(ctx, m)
				if err != nil {
					return err
				}
				// Installs hit package mirrors: retry a transient failure
				// twice. A lost connection is resume's, on a new one.
				err = retry.Do(ctx, retry.Policy{Initial: 2 * time.Second, MaxAttempts: 3}, func(ctx context.Context) (bool, error) {
					err := r.e.Prepare(ctx, m, conn)
					return err == nil || ctx.Err() != nil || errors.Is(err, cluster.ErrConnectionLost), err
				})
				if err != nil {
					return err
				}
				// Preparing adds a non-root login user to the docker group,
				// which only a new login has; the Swarm driver opens the
				// Docker socket as that user.
				r.dropConn(id)
				_, err = r.conn(ctx, m)
				return err
			})
		}); err != nil {
			return err
		}
		if err := r.update(ctx, id, func(m *state.Machine) { m.Phase = state.PhaseReady }); err != nil {
			return err
		}
	} else {
		r.emit(Event{Machine: id, Pool: m.Pool, Stage: StageRuntime, Status: StatusSkip})
	}
	// A machine waiting for the first manager must not hold a slot the
	// manager itself may need.
	release()

	if id == mgr.primary {
		err := stage(StageJoin, t.Join, func(ctx context.Context) error {
			return r.resume(ctx, StageJoin, []string{id}, func(ctx context.Context) error {
				node, err := r.node(ctx, id)
				if err != nil {
					return err
				}
				return r.e.Driver.Init(ctx, node)
			})
		})
		if err == nil {
			err = r.update(ctx, id, func(m *state.Machine) { m.Phase = state.PhaseJoined })
		}
		mgr.open(err)
		return err
	}
	if err := mgr.wait(ctx); err != nil {
		r.emit(Event{Machine: id, Pool: m.Pool, Stage: StageJoin, Status: StatusFail, Err: err.Error()})
		return &MachineError{Machine: id, Pool: m.Pool, Stage: string(StageJoin), Err: err}
	}
	if err := stage(StageJoin, t.Join, func(ctx context.Context) error {
		mnode, err := r.managerNode(ctx, mgr.primary)
		if err != nil {
			return err
		}
		// A just-initialized manager may refuse for a moment: retry to the
		// deadline. A connection to either machine that broke is dialed
		// again for the next try (the driver's join is idempotent).
		return retry.Do(ctx, retry.Policy{Initial: time.Second}, func(ctx context.Context) (bool, error) {
			node, err := r.node(ctx, id)
			if err != nil {
				return true, err
			}
			cred, err := r.e.Driver.Credential(ctx, mnode, m.Role)
			if err == nil {
				err = r.e.Driver.Join(ctx, node, mnode, cred)
			}
			if err == nil || ctx.Err() != nil {
				return true, err
			}
			if r.lost(ctx, StageJoin, err, id, mnode.Name) {
				if mnode, err = r.managerNode(ctx, mgr.primary); err != nil {
					return true, err
				}
			}
			return false, err
		})
	}); err != nil {
		return err
	}
	return r.update(ctx, id, func(m *state.Machine) { m.Phase = state.PhaseJoined })
}

// node is machine id as its cluster driver sees it, over the run's session
// to it.
func (r *run) node(ctx context.Context, id string) (cluster.Node, error) {
	m := r.machine(id)
	c, err := r.conn(ctx, m)
	if err != nil {
		return cluster.Node{}, err
	}
	return cluster.Node{Name: id, Address: nodeAddress(m), PublicAddress: m.Address, Role: m.Role, Run: c,
		Labels: r.nodeLabels(m), Taints: r.nodeTaints(m)}, nil
}

// maxResumes bounds how often one stage of one machine starts over after an
// SSH connection broke under it. Each start dials anew and skips what is
// done, so a link that breaks now and then gets through (the runtime stage
// has six steps: a break in each is six); the bound stops a machine that
// drops every connection it accepts from going round until the stage's
// deadline.
const maxResumes = 10

// resume runs a stage's work f and, when it failed because an SSH
// connection to one of the machines ids broke (the link dropped; the machine
// may be fine), runs it again on a new connection, up to maxResumes times.
// The work is idempotent by design: bootstrap steps skip by their checks
// what is done, and a host key rotation or a join picks up from state and
// from the machine.
func (r *run) resume(ctx context.Context, s Stage, ids []string, f func(ctx context.Context) error) error {
	for n := 1; ; n++ {
		err := f(ctx)
		if err == nil || n > maxResumes || !r.lost(ctx, s, err, ids...) {
			return err
		}
	}
}

// lost reports whether err, the failure of stage s, came with a broken SSH
// connection to one of the machines ids, and drops each broken session so
// that the next use dials again, with the keys state pins by then. A
// command says so itself (cluster.ErrConnectionLost), but a protocol
// carried over the connection (the Docker API on its socket) fails with a
// plain EOF: so each session is asked too, with a no-op command.
func (r *run) lost(ctx context.Context, s Stage, err error, ids ...string) bool {
	if ctx.Err() != nil {
		return false
	}
	lost := errors.Is(err, cluster.ErrConnectionLost)
	for _, id := range ids {
		r.mu.Lock()
		c, ok := r.conns[id]
		r.mu.Unlock()
		if !ok {
			continue
		}
		if perr := c.Run(ctx, "true", nil, nil); errors.Is(perr, cluster.ErrConnectionLost) {
			r.dropConnIf(id, c)
			lost = true
		}
	}
	if lost {
		r.log.Warn("ssh connection lost; going on over a new connection", "machine", ids[0], "stage", s, "err", err)
	}
	return lost
}

// PoolLabel is the cluster node label naming a machine's pool.
const PoolLabel = "provision.pool"

// nodeLabels are the labels m's cluster node gets: its pool's, and its
// pool's name.
func (r *run) nodeLabels(m state.Machine) map[string]string {
	labels := map[string]string{PoolLabel: m.Pool}
	if pool := r.plan.Pool(m.Pool); pool != nil {
		maps.Copy(labels, pool.Labels)
	}
	return labels
}

// nodeTaints are the taints m's pool gives its Kubernetes nodes (the
// loader has checked they parse).
func (r *run) nodeTaints(m state.Machine) []cluster.Taint {
	pool := r.plan.Pool(m.Pool)
	if pool == nil {
		return nil
	}
	var out []cluster.Taint
	for _, s := range pool.Taints {
		if t, err := plans.ParseTaint(s); err == nil {
			out = append(out, cluster.Taint{Key: t.Key, Value: t.Value, Effect: t.Effect})
		}
	}
	return out
}

var phaseOrder = map[state.Phase]int{state.PhaseIntent: 0, state.PhaseCreated: 1, state.PhaseReady: 2, state.PhaseJoined: 3, state.PhaseRemoving: 4}

func phaseBefore(a, b state.Phase) bool { return phaseOrder[a] < phaseOrder[b] }

func nodeAddress(m state.Machine) string {
	if m.PrivateAddress != "" {
		return m.PrivateAddress
	}
	return m.Address
}

func (r *run) machine(id string) state.Machine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return *r.st.Machine(id)
}

// conn returns the run's session to a machine, dialing it when there is
// none (the first time, or after a broken one was dropped) with the keys
// state pins now.
func (r *run) conn(ctx context.Context, m state.Machine) (Conn, error) {
	r.mu.Lock()
	c, ok := r.conns[m.ID]
	if cur := r.st.Machine(m.ID); cur != nil {
		m = *cur // a rotation may have moved on since m was read
	}
	r.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := r.e.Connector.Connect(ctx, m)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.conns[m.ID]; ok {
		_ = c.Close()
		return prev, nil
	}
	r.conns[m.ID] = c
	return c, nil
}

// managerNode returns a session to the manager that joins and drains go
// through: id, or when it does not answer, another joined manager (a lost
// control-plane node must not stop the cluster from growing or shrinking).
func (r *run) managerNode(ctx context.Context, id string) (cluster.Node, error) {
	r.mu.Lock()
	ids := r.st.ManagersFrom(id)
	ms := make([]state.Machine, 0, len(ids))
	for _, mid := range ids {
		ms = append(ms, *r.st.Machine(mid))
	}
	r.mu.Unlock()
	if len(ms) == 0 {
		return cluster.Node{}, ErrNoManager
	}
	c, m, err := dialFirst(ctx, ms, r.conn)
	if err != nil {
		return cluster.Node{}, err
	}
	if m.ID != id {
		r.log.Warn("manager does not answer; going through another", "manager", id, "instead", m.ID)
	}
	return cluster.Node{Name: m.ID, Address: nodeAddress(m), Role: m.Role, Run: c}, nil
}

// dropConnIf drops c, the session to machine id, unless another has
// replaced it meanwhile.
func (r *run) dropConnIf(id string, c Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.conns[id]; ok && cur == c {
		_ = c.Close()
		delete(r.conns, id)
	}
}

func (r *run) dropConn(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.conns[id]; ok {
		_ = c.Close()
		delete(r.conns, id)
	}
}
