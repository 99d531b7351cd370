// Package apply owns the apply engine: it executes a plan's changes against
// providers and machines as per-machine pipelines (create → SSH → runtime →
// join), records every step in state as it happens, and tears clusters down.
// `up`, `down`, the autoscaler and the Pulumi provider all drive it.
package apply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/hostkey"
	"github.com/provisionhq/provision/state"
)

// Conn is a session to one machine.
type Conn interface {
	cluster.Runner
	Close() error
}

// Connector opens sessions to machines, verifying each one's pinned host key
// and retrying until the machine answers or ctx ends.
type Connector interface {
	Connect(ctx context.Context, m state.Machine) (Conn, error)
}

// Preparer installs and configures the container runtime on a machine, and
// runs its pool's setup commands.
type Preparer func(ctx context.Context, m state.Machine, r cluster.Runner) error

// Timeouts bound each stage of a machine's pipeline.
type Timeouts struct {
	Create  time.Duration // provider Create of one pool's batch
	SSH     time.Duration // until the machine answers SSH
	Runtime time.Duration // install and start the container runtime
	Join    time.Duration // join once the first manager is ready
	Remove  time.Duration // drain, leave and delete one machine
}

// DefaultTimeouts fit a slow cloud and a Debian apt install.
var DefaultTimeouts = Timeouts{
	Create:  10 * time.Minute,
	SSH:     5 * time.Minute,
	Runtime: 15 * time.Minute,
	Join:    5 * time.Minute,
	Remove:  5 * time.Minute,
}

// DefaultParallelism bounds the machines bootstrapped at once: a quarter
// of the process's open-file limit, between 10 and MaxDefaultParallelism.
// A pipeline waiting on a machine costs a goroutine and an SSH connection
// (a descriptor or two), so a thousand are cheap, and a pool of a thousand
// machines starts all of them at once instead of in waves. What is scarce
// is bounded where it is scarce: API calls in each provider's gate,
// descriptors here (Go raises the soft limit to the hard one at start).
// --parallelism overrides it.
func DefaultParallelism() int {
	n, ok := openFileLimit()
	if !ok {
		return 200
	}
	return int(min(max(n/4, 10), MaxDefaultParallelism))
}

// MaxDefaultParallelism caps the default bootstrap concurrency.
const MaxDefaultParallelism = 1000

// Engine executes plans. Fields are set once; an Engine is safe for one
// Apply or Destroy at a time per Backend (the state lock enforces it).
type Engine struct {
	Providers *providers.Registry
	Backend   state.Backend
	Connector Connector
	Prepare   Preparer
	Driver    cluster.Driver
	// HostKeys generates a machine's SSH host key before it is created.
	HostKeys func() (hostkey.Key, error)
	// HostKeyRotator, when set, gives each machine a host key of its own
	// right after the first verified connection, so the key its creation
	// carried (in user-data) opens nothing any more; see rotateHostKey.
	// Machines of a providers.HostKeyKeeper keep theirs.
	HostKeyRotator HostKeyRotator
	// AuthorizedKeys are installed for the plan's SSH user on new machines.
	AuthorizedKeys []string
	// ProviderDir is where providers may keep files (see providers.Env).
	ProviderDir string
	Logger      *slog.Logger
	// Events receives progress; nil discards it. It is called from many
	// goroutines and must be safe for that.
	Events      func(Event)
	Timeouts    Timeouts
	Parallelism int
	// Operation names the run in the lock ("up", "down", "autoscale").
	Operation string
	// LockWait, when positive, is how long a run waits for a state lock
	// another run holds; zero fails at once naming the holder (the CLI).
	LockWait time.Duration
}

// Report says what a run did.
type Report struct {
	// Created counts new machines this run created and brought up; a new
	// machine that failed at any stage is in Failed instead.
	Created, Deleted, Resumed, Unchanged int
	Adopted, Forgotten, Orphans          int
	// Failed are the machines that failed a stage this run, by ID.
	Failed   []Failure
	Duration time.Duration
}

// Failure is one machine's first failed stage in a run.
type Failure struct {
	Machine string `json:"machine"`
	Pool    string `json:"pool"`
	Stage   Stage  `json:"stage"`
	Err     string `json:"error"`
}

// MachineError is one machine's failure at one stage.
type MachineError struct {
	Machine, Pool, Stage string
	Err                  error
}

func (e *MachineError) Error() string {
	return fmt.Sprintf("machine %s (pool %s): %s: %v", e.Machine, e.Pool, e.Stage, e.Err)
}
func (e *MachineError) Unwrap() error { return e.Err }

// Apply converges the cluster to the plan.
func (e *Engine) Apply(ctx context.Context, p *plans.Plan) (*Report, error) {
	return e.converge(ctx, p, Resize{}, nil)
}

// Resize is what the autoscaler asks of a run.
type Resize struct {
	// Sizes are new sizes for autoscaled pools; they are recorded in state
	// so later runs keep them.
	Sizes map[string]int
	// Remove names machines already drained: a shrinking pool gives them
	// up before any other.
	Remove []string
}

// Resize records new sizes for autoscaled pools and converges those pools to
// them, in the same run as Apply (lock, reconcile, create, bootstrap, drain,
// delete). Other pools are left as they are, whatever p says of them: they
// are `provision up`'s.
func (e *Engine) Resize(ctx context.Context, p *plans.Plan, rs Resize) (*Report, error) {
	for name, n := range rs.Sizes {
		pool := p.Pool(name)
		switch {
		case pool == nil:
			return nil, fmt.Errorf("resize pool %q: no such pool in the plan", name)
		case pool.Autoscale == nil:
			return nil, fmt.Errorf("resize pool %q: the pool has no autoscale block", name)
		case n < pool.Autoscale.Min || n > pool.Autoscale.Max:
			return nil, fmt.Errorf("resize pool %q to %d: outside min %d and max %d", name, n, pool.Autoscale.Min, pool.Autoscale.Max)
		}
	}
	return e.converge(ctx, p, rs, p.Autoscaled())
}

// converge is one run: lock, reconcile with the providers, record rs's
// sizes, then execute the diff, restricted to the pools in only unless it
// is nil.
func (e *Engine) converge(ctx context.Context, p *plans.Plan, rs Resize, only map[string]bool) (*Report, error) {
	start := time.Now()
	r, unlock, err := e.begin(ctx, p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := r.reconcile(ctx, true); err != nil {
		return nil, err
	}
	if len(rs.Sizes) > 0 {
		r.mu.Lock()
		if r.st.Sizes == nil {
			r.st.Sizes = map[string]int{}
		}
		maps.Copy(r.st.Sizes, rs.Sizes)
		err = r.saveLocked(ctx)
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	remove := make(map[string]bool, len(rs.Remove))
	for _, id := range rs.Remove {
		remove[id] = true
	}
	changes := plans.DiffRemoving(p, r.st, remove)
	if only != nil {
		changes = changes.Only(only)
	}
	err = r.execute(ctx, changes)
	return r.finish(start), err
}

// finish completes the report of a converge: the failed machines in ID
// order, and Created without the new machines among them (created by
// their provider, then failed to come up).
func (r *run) finish(start time.Time) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failMu.Lock()
	defer r.failMu.Unlock()
	r.report.Failed = r.report.Failed[:0]
	for id, f := range r.failed {
		r.report.Failed = append(r.report.Failed, f)
		if r.fresh[id] && f.Stage != StageCreate {
			r.report.Created-- // counted when its provider returned it
		}
	}
	sort.Slice(r.report.Failed, func(i, j int) bool { return r.report.Failed[i].Machine < r.report.Failed[j].Machine })
	r.report.Duration = time.Since(start)
	return &r.report
}

// Refresh makes the state agree with what the providers have, as every
// Apply does first, but creates and deletes nothing: a machine whose create
// was interrupted is adopted, one that vanished is forgotten (the next
// Apply recreates it), and machines of this cluster the state does not know
// are only reported (the next Apply deletes them).
func (e *Engine) Refresh(ctx context.Context, p *plans.Plan) (*Report, error) {
	start := time.Now()
	r, unlock, err := e.begin(ctx, p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	err = r.reconcile(ctx, false)
	r.report.Duration = time.Since(start)
	return &r.report, err
}

// Plan returns the changes Apply would make, from state alone (no lock, no
// provider calls).
func (e *Engine) Plan(ctx context.Context, p *plans.Plan) (*plans.Changes, error) {
	st, err := e.Backend.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	return plans.Diff(p, st), nil
}

// run is one Apply or Destroy: the state under the lock and what it touched.
type run struct {
	e      *Engine
	plan   *plans.Plan
	log    *slog.Logger
	mu     sync.Mutex // guards st, conns and report
	st     *state.State
	provs  map[string]providers.Provider
	conns  map[string]Conn
	fresh  map[string]bool // machines this run decided to create
	report Report

	// failMu guards failed; emit takes it, sometimes under mu.
	failMu sync.Mutex
	failed map[string]Failure // each machine's first failure this run
}

func (e *Engine) begin(ctx context.Context, p *plans.Plan) (*run, func(), error) {
	op := e.Operation
	if op == "" {
		op = "apply"
	}
	lockID, err := e.lock(ctx, state.NewLockInfo(op))
	if err != nil {
		return nil, nil, err
	}
	unlock := func() {
		// The run's ctx may be cancelled (Ctrl-C); the unlock must still happen.
		if err := e.Backend.Unlock(context.WithoutCancel(ctx), lockID); err != nil {
			e.logger().Warn("unlock state", "err", err)
		}
	}
	st, err := e.Backend.Read(ctx)
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("read state: %w", err)
	}
	if st.Cluster != "" && st.Cluster != p.Cluster.Name {
		unlock()
		return nil, nil, fmt.Errorf("state belongs to cluster %q, the plan names %q", st.Cluster, p.Cluster.Name)
	}
	st.Cluster = p.Cluster.Name
	r := &run{e: e, plan: p, log: e.logger(), st: st, provs: map[string]providers.Provider{}, conns: map[string]Conn{}, fresh: map[string]bool{}}
	done := func() {
		r.closeConns()
		unlock()
	}
	return r, done, nil
}

func (e *Engine) lock(ctx context.Context, info state.LockInfo) (string, error) {
	if e.LockWait <= 0 {
		return e.Backend.Lock(ctx, info)
	}
	wctx, cancel := context.WithTimeout(ctx, e.LockWait)
	defer cancel()
	return state.LockWait(wctx, e.Backend, info)
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (e *Engine) timeouts() Timeouts {
	t := e.Timeouts
	d := DefaultTimeouts
	for _, f := range []struct{ v, def *time.Duration }{{&t.Create, &d.Create}, {&t.SSH, &d.SSH}, {&t.Runtime, &d.Runtime}, {&t.Join, &d.Join}, {&t.Remove, &d.Remove}} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}

func (r *run) emit(ev Event) {
	ev.Time = time.Now()
	if ev.Status == StatusFail && ev.Machine != "" {
		r.failMu.Lock()
		if _, ok := r.failed[ev.Machine]; !ok {
			if r.failed == nil {
				r.failed = map[string]Failure{}
			}
			r.failed[ev.Machine] = Failure{Machine: ev.Machine, Pool: ev.Pool, Stage: ev.Stage, Err: ev.Err}
		}
		r.failMu.Unlock()
	}
	if r.e.Events != nil {
		r.e.Events(ev)
	}
}

// provider returns the named provider, building it once per run.
func (r *run) provider(ctx context.Context, name string) (providers.Provider, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.provs[name]; ok {
		return p, nil
	}
	// Every provider tags its own lines provider=<name> (it logs outside
	// the engine too: Pulumi, tests), so the engine's logger goes as it is;
	// adding the attribute here as well printed it twice on every line.
	env := providers.Env{Cluster: r.st.Cluster, Dir: r.e.ProviderDir, Logger: r.log, Pools: map[string]providers.Settings{}}
	if r.plan != nil {
		for _, pool := range r.plan.Pools {
			if pool.Provider == name {
				env.Pools[pool.Name] = pool.Settings
			}
		}
	}
	p, err := r.e.Providers.New(ctx, name, env)
	if err != nil {
		return nil, err
	}
	r.provs[name] = p
	return p, nil
}

// save writes the state. Callers hold r.mu.
func (r *run) saveLocked(ctx context.Context) error {
	// A cancelled run still records what it did, so the next run resumes.
	if err := r.e.Backend.Write(context.WithoutCancel(ctx), r.st); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func (r *run) update(ctx context.Context, id string, f func(m *state.Machine)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.st.Machine(id); m != nil {
		f(m)
	}
	return r.saveLocked(ctx)
}

// providerNames lists every provider the plan or the state uses.
func (r *run) providerNames() []string {
	set := map[string]bool{}
	if r.plan != nil {
		for _, p := range r.plan.Pools {
			set[p.Provider] = true
		}
	}
	for _, m := range r.st.Machines {
		set[m.Provider] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// reconcile makes state agree with what the providers have: it adopts
// machines whose create response was lost, forgets machines that vanished,
// and, when deleteOrphans, deletes machines of this cluster that state does
// not know.
func (r *run) reconcile(ctx context.Context, deleteOrphans bool) error {
	for _, name := range r.providerNames() {
		p, err := r.provider(ctx, name)
		if err != nil {
			return err
		}
		found, err := p.List(ctx, providers.Selector{Cluster: r.st.Cluster})
		if err != nil {
			return fmt.Errorf("list machines on %s: %w", name, err)
		}
		seen := map[string]providers.Machine{}
		for _, m := range found {
			seen[string(m.ID)] = m
		}
		r.mu.Lock()
		var forget []string
		for i := range r.st.Machines {
			m := &r.st.Machines[i]
			if m.Provider != name {
				continue
			}
			pm, ok := seen[m.ID]
			delete(seen, m.ID)
			switch {
			case ok && m.Phase == state.PhaseIntent && (pm.Address == "" || pm.State != providers.StateRunning):
				// Killed between the provider's create and the machine
				// running: it may have no address yet, or not its final
				// one, and maybe not its keys. It stays an intent, so Create
				// (idempotent per ID) finishes it, waits for it to run and
				// reads its address.
				r.log.Info("machine whose create was interrupted before it started is created again", "machine", m.ID, "provider", name, "state", pm.State)
			case ok && m.Phase == state.PhaseIntent:
				setCreated(m, pm)
				r.report.Adopted++
				r.log.Info("adopted machine whose create was interrupted", "machine", m.ID, "provider", name)
			case ok:
				setAddress(m, pm)
			case m.Phase != state.PhaseIntent && m.Phase != state.PhaseRemoving:
				forget = append(forget, m.ID)
				r.log.Warn("machine vanished from its provider; forgetting it so the plan recreates it", "machine", m.ID, "provider", name)
			case m.Phase == state.PhaseRemoving:
				forget = append(forget, m.ID) // its deletion finished
			}
		}
		for _, id := range forget {
			r.st.Remove(id)
			r.report.Forgotten++
		}
		err = r.saveLocked(ctx)
		r.mu.Unlock()
		if err != nil {
			return err
		}
		if len(seen) > 0 {
			ids := make([]providers.MachineID, 0, len(seen))
			for id := range seen {
				ids = append(ids, providers.MachineID(id))
			}
			sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
			if !deleteOrphans {
				r.log.Warn("the provider has machines of this cluster that state does not know; the next apply deletes them", "provider", name, "machines", ids)
				continue
			}
			r.log.Warn("deleting machines of this cluster that state does not know", "provider", name, "machines", ids)
			if err := p.Delete(ctx, ids); err != nil {
				return fmt.Errorf("delete %d orphaned machines on %s: %w", len(ids), name, err)
			}
			r.report.Orphans += len(ids)
		}
	}
	return nil
}

func setCreated(m *state.Machine, pm providers.Machine) {
	setAddress(m, pm)
	if m.Phase == state.PhaseIntent {
		m.Phase = state.PhaseCreated
	}
}

func setAddress(m *state.Machine, pm providers.Machine) {
	m.ProviderID = pm.ProviderID
	m.Address = pm.Address
	m.Port = pm.Port
	m.PrivateAddress = pm.PrivateAddress
	if pm.HostKey != "" {
		m.HostKey = pm.HostKey
	}
}

func (r *run) closeConns() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, c := range r.conns {
		_ = c.Close()
		delete(r.conns, id)
	}
}

// errorsOf joins machine errors in a stable order.
func errorsOf(errs []error) error {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}
