package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

// Loop defaults.
const (
	DefaultScanInterval = 10 * time.Second
	DefaultCooldown     = 2 * time.Minute
	DefaultDrainTimeout = 5 * time.Minute
	// resumeInterval spaces out attempts to finish machines a run left
	// unfinished, so a bootstrap that keeps failing is not hammered.
	resumeInterval = 30 * time.Second
)

// StateReader reads the cluster's machines: a state.Backend.
type StateReader interface {
	Read(ctx context.Context) (*state.State, error)
}

// Actuator changes the cluster: the engine, resizing p's autoscaled pools
// (apply.Engine.Resize).
type Actuator interface {
	Resize(ctx context.Context, p *plans.Plan, sizes map[string]int, remove []string) error
}

// Loop watches demand and resizes the plan's autoscaled pools. One Loop acts
// at a time per cluster: run it under leader election when replicas run.
type Loop struct {
	Plan      *plans.Plan
	Source    Source
	State     StateReader
	Actuator  Actuator
	Planner   Planner
	ScaleDown ScaleDown
	// NoScaleDown turns scale-down off.
	NoScaleDown bool
	// Cooldown is how long after a scale change no node is removed.
	Cooldown     time.Duration // 0: DefaultCooldown
	ScanInterval time.Duration // 0: DefaultScanInterval
	DrainTimeout time.Duration // 0: DefaultDrainTimeout
	// Reload, when set, is asked at the start of every pass for a newer
	// plan (the file was edited): nil keeps the current one; an error is
	// logged and the current plan kept, so a typo never stops the loop.
	Reload func() (*plans.Plan, error)
	// Fence, when set, is asked right before every change; an error (this
	// replica is no longer the leader) cancels the change.
	Fence   func(ctx context.Context) error
	Metrics *Metrics // nil: none
	Log     *slog.Logger
	Now     func() time.Time // nil: time.Now

	lastChange time.Time
	nextResume time.Time
	shapes     map[string]Resources // machine shapes learned from nodes, per pool
	lastReason string
}

// Outcome is what one pass did.
type Outcome struct {
	Decision Decision
	// Grew and Shrank are the pool sizes the pass asked for.
	Grew, Shrank map[string]int
	// Removed are the nodes drained and removed.
	Removed []string
	// Resumed is set when the pass finished machines an earlier run left
	// unfinished.
	Resumed bool
	// Again asks for another pass at once (a pool failed over).
	Again bool
}

func (l *Loop) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Loop) log() *slog.Logger {
	if l.Log != nil {
		return l.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Run makes passes until ctx is done: at once, whenever the source reports a
// change, and at least every ScanInterval. A failed pass is logged and
// retried at the next trigger; Run returns ctx's error.
func (l *Loop) Run(ctx context.Context) error {
	trigger := make(chan struct{}, 1)
	poke := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return l.Source.Watch(ctx, poke) })
	g.Go(func() error {
		tick := time.NewTicker(cmpOr(l.ScanInterval, DefaultScanInterval))
		defer tick.Stop()
		poke()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-trigger:
			case <-tick.C:
			}
			out, err := l.Pass(ctx)
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				l.log().Error("autoscaler pass failed", "err", err)
			case out.Again:
				poke()
			}
		}
	})
	return g.Wait()
}

// Pass looks at demand once and acts on it: a scale-up when tasks are
// pending and a pool can take them, else a scale-down of unneeded nodes.
func (l *Loop) Pass(ctx context.Context) (out Outcome, err error) {
	start := l.now()
	defer func() { l.Metrics.pass(l.now().Sub(start), err) }()
	l.reload()

	snap, err := l.Source.Snapshot(ctx)
	if err != nil {
		return out, fmt.Errorf("read demand: %w", err)
	}
	st, err := l.State.Read(ctx)
	if err != nil {
		return out, fmt.Errorf("read state: %w", err)
	}
	v := l.view(snap, st)
	out.Decision = l.Planner.Decide(v.demand)
	for _, name := range v.unknown {
		out.Decision.Reason += fmt.Sprintf("; pool %s: machine shape unknown until one of its nodes joins (set autoscale.cpu and autoscale.memory)", name)
	}
	l.Metrics.observe(v, l.Planner.Backoff)
	l.Metrics.decision(out.Decision)
	l.logDecision(out.Decision, len(v.demand.Pending))

	// Every pass updates how long each node has been unneeded, even one
	// that may not act: a node that was busy in between starts over.
	var cands []Candidate
	if !l.NoScaleDown {
		l.ScaleDown.Now = l.Now
		cands = l.ScaleDown.Candidates(v.demand.Nodes, v.demand.Pools)
	}
	if len(out.Decision.ScaleUps) > 0 {
		return l.scaleUp(ctx, v, out)
	}
	if v.unfinished > 0 && !l.now().Before(l.nextResume) {
		return l.resume(ctx, v, out)
	}
	if len(cands) == 0 || len(v.demand.Pending) > 0 {
		return out, nil
	}
	if since := l.now().Sub(l.lastChange); since < cmpOr(l.Cooldown, DefaultCooldown) {
		return out, nil
	}
	return l.scaleDown(ctx, v, cands, out)
}

// view is one pass's picture: the demand in the planner's terms and the
// plan's machines per pool.
type view struct {
	demand Demand
	// machines are the state's machines per autoscaled pool (not being
	// removed); nonIntent counts those past the intent phase.
	machines  map[string][]state.Machine
	nonIntent map[string]int
	// unfinished counts autoscaled pools' machines not yet joined.
	unfinished int
	unknown    []string // autoscaled pools whose machine shape is unknown
}

func (l *Loop) view(snap Snapshot, st *state.State) view {
	v := view{machines: map[string][]state.Machine{}, nonIntent: map[string]int{}}
	poolOf := make(map[string]string, len(st.Machines))
	for _, m := range st.Machines {
		poolOf[m.ID] = m.Pool
		if m.Phase == state.PhaseRemoving {
			continue
		}
		v.machines[m.Pool] = append(v.machines[m.Pool], m)
		if m.Phase != state.PhaseIntent {
			v.nonIntent[m.Pool]++
		}
	}
	visible := map[string]int{} // pool -> nodes the orchestrator shows
	seen := map[string]bool{}
	if l.shapes == nil {
		l.shapes = map[string]Resources{}
	}
	nodes := slices.Clone(snap.Nodes)
	for i := range nodes {
		n := &nodes[i]
		n.Pool = poolOf[n.Name]
		seen[n.Name] = true
		if n.Pool == "" {
			continue
		}
		visible[n.Pool]++
		s := l.shapes[n.Pool]
		l.shapes[n.Pool] = Resources{max(s.MilliCPU, n.Allocatable.MilliCPU), max(s.MemoryBytes, n.Allocatable.MemoryBytes)}
	}
	v.demand = Demand{Pending: snap.Pending, Nodes: nodes}
	for _, pl := range l.Plan.Pools {
		a := pl.Autoscale
		if a == nil {
			continue
		}
		shape := Resources{a.MilliCPU, a.MemoryBytes}
		learned := l.shapes[pl.Name]
		if shape.MilliCPU == 0 {
			shape.MilliCPU = learned.MilliCPU
		}
		if shape.MemoryBytes == 0 {
			shape.MemoryBytes = learned.MemoryBytes
		}
		if shape.MilliCPU == 0 || shape.MemoryBytes == 0 {
			v.unknown = append(v.unknown, pl.Name)
			continue
		}
		for _, m := range v.machines[pl.Name] {
			if m.Phase != state.PhaseJoined {
				v.unfinished++
			}
		}
		// A machine in state that the orchestrator does not show yet is
		// being created, bootstrapped or joined: capacity on its way. A
		// backed-off pool's intents failed and are not coming.
		inFlight := 0
		_, backedOff := l.Planner.backedOff(pl.Name)
		for _, m := range v.machines[pl.Name] {
			if !seen[m.ID] && !(backedOff && m.Phase == state.PhaseIntent) {
				inFlight++
			}
		}
		labels := maps.Clone(pl.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		// What a new node will carry: its role, the pool label the engine
		// sets on join, and the OS every provision host runs.
		labels["node.role"] = string(pl.Role)
		labels["provision.pool"] = pl.Name
		labels["node.platform.os"] = "linux"
		v.demand.Pools = append(v.demand.Pools, PoolShape{
			Name: pl.Name, Provider: pl.Provider, Allocatable: shape, Labels: labels,
			Min: a.Min, Max: a.Max, Current: visible[pl.Name], InFlight: inFlight,
			PricePerHour: a.Price, Priority: a.Priority,
		})
	}
	return v
}

func (l *Loop) reload() {
	if l.Reload == nil {
		return
	}
	p, err := l.Reload()
	switch {
	case err != nil:
		l.log().Error("plan changed but does not load; keeping the previous one", "err", err)
	case p != nil:
		l.Plan = p
		l.log().Info("plan reloaded", "pools", len(p.Pools))
	}
}

func (l *Loop) logDecision(d Decision, pending int) {
	// The same decision again (an idle cluster, tasks waiting for machines
	// that boot) would repeat the line every pass: only a change is news.
	level := slog.LevelInfo
	if d.Reason == l.lastReason {
		level = slog.LevelDebug
	}
	l.lastReason = d.Reason
	l.log().Log(context.Background(), level, "autoscaler decision", "pending", pending, "scale_ups", len(d.ScaleUps), "reason", d.Reason)
}

func (l *Loop) fence(ctx context.Context) error {
	if l.Fence == nil {
		return nil
	}
	if err := l.Fence(ctx); err != nil {
		return fmt.Errorf("not acting: %w", err)
	}
	return nil
}

// scaleUp grows the chosen pools. A pool that fails with a quota or capacity
// error is backed off and the pass asks to run again at once, so the next
// decision fails over to another pool.
func (l *Loop) scaleUp(ctx context.Context, v view, out Outcome) (Outcome, error) {
	sizes := map[string]int{}
	for _, su := range out.Decision.ScaleUps {
		if _, ok := sizes[su.Pool]; !ok {
			sizes[su.Pool] = len(v.machines[su.Pool])
		}
		sizes[su.Pool] += su.Nodes
	}
	l.giveUpFailed(v, sizes)
	out.Grew = sizes
	if err := l.fence(ctx); err != nil {
		return out, err
	}
	l.log().Info("autoscaler scaling up", "sizes", sizes, "reason", out.Decision.Reason)
	err := l.Actuator.Resize(ctx, l.Plan, sizes, nil)
	l.lastChange = l.now()
	l.Metrics.decided("scale_up", err)
	if err == nil {
		for _, su := range out.Decision.ScaleUps {
			l.Planner.succeeded(su.Pool)
		}
		return out, nil
	}
	grown := make([]string, len(out.Decision.ScaleUps))
	for i, su := range out.Decision.ScaleUps {
		grown[i] = su.Pool
	}
	if l.backOff(err, grown) {
		out.Again = true
		return out, nil
	}
	return out, fmt.Errorf("scale up %v: %w", sizes, err)
}

// backOff backs off the pool err is a quota or capacity failure of: the one
// the provider error names, else the only pool grown. It reports whether a
// pool was backed off, so the caller runs another pass to fail over.
func (l *Loop) backOff(err error, grown []string) bool {
	pool := ""
	var pe *providers.Error
	switch {
	case errors.As(err, &pe) && pe.Pool != "":
		pool = pe.Pool
	case len(grown) == 1:
		pool = grown[0]
	}
	if pool == "" || !l.Planner.failed(pool, err) {
		return false
	}
	st, _ := l.Planner.backedOff(pool)
	provider := ""
	if pl := l.Plan.Pool(pool); pl != nil {
		provider = pl.Provider
	}
	l.log().Warn("autoscaler backs off pool", "pool", pool, "provider", provider, "until", st.Until.Format(time.RFC3339), "cause", err)
	return true
}

// giveUpFailed shrinks backed-off pools to the machines they really have:
// their failed intents would only hit the same quota again.
func (l *Loop) giveUpFailed(v view, sizes map[string]int) {
	for _, pl := range v.demand.Pools {
		if _, off := l.Planner.backedOff(pl.Name); off && v.nonIntent[pl.Name] < len(v.machines[pl.Name]) {
			if _, growing := sizes[pl.Name]; !growing {
				sizes[pl.Name] = max(v.nonIntent[pl.Name], pl.Min)
			}
		}
	}
}

// resume finishes machines an earlier run left unfinished (a bootstrap that
// failed, a leader killed mid-apply). They count as capacity on its way, so
// no decision would ever replace them, and nothing else finishes them.
func (l *Loop) resume(ctx context.Context, v view, out Outcome) (Outcome, error) {
	l.nextResume = l.now().Add(resumeInterval)
	sizes := map[string]int{}
	l.giveUpFailed(v, sizes)
	if err := l.fence(ctx); err != nil {
		return out, err
	}
	l.log().Info("autoscaler resuming unfinished machines", "machines", v.unfinished, "sizes", sizes)
	out.Resumed = true
	err := l.Actuator.Resize(ctx, l.Plan, sizes, nil)
	l.Metrics.decided("resume", err)
	if err == nil {
		return out, nil
	}
	if l.backOff(err, nil) {
		out.Again = true
		return out, nil
	}
	return out, fmt.Errorf("resume unfinished machines: %w", err)
}

// scaleDown drains the nodes that stayed unneeded and removes them.
func (l *Loop) scaleDown(ctx context.Context, v view, cands []Candidate, out Outcome) (Outcome, error) {
	if err := l.fence(ctx); err != nil {
		return out, err
	}
	sizes := map[string]int{}
	var drained []string
	var errs []error
	for _, c := range cands {
		l.log().Info("autoscaler scaling down", "node", c.Node, "pool", c.Pool, "reason", c.Reason)
		dctx, cancel := context.WithTimeout(ctx, cmpOr(l.DrainTimeout, DefaultDrainTimeout))
		err := l.Source.Drain(dctx, c.Node)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("drain %s: %w", c.Node, err))
			continue
		}
		drained = append(drained, c.Node)
		if _, ok := sizes[c.Pool]; !ok {
			sizes[c.Pool] = len(v.machines[c.Pool])
		}
		sizes[c.Pool]--
	}
	if len(drained) > 0 {
		out.Shrank, out.Removed = sizes, drained
		err := l.Actuator.Resize(ctx, l.Plan, sizes, drained)
		l.lastChange = l.now()
		l.Metrics.decided("scale_down", err)
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", strings.Join(drained, ", "), err))
		}
	}
	return out, errors.Join(errs...)
}
