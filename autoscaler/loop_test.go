package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

// world is a fake cluster: the state's machines, the nodes the orchestrator
// shows, and pending tasks. It is the loop's Source, StateReader and
// Actuator at once, and joins new machines only when told (boot), so tests
// can look at the loop while machines are in flight.
type world struct {
	mu       sync.Mutex
	plan     *plans.Plan
	machines []state.Machine
	nodes    map[string]Node // by name, only joined machines
	pending  []Task
	// fail makes Resize fail for a pool (a cloud's quota error).
	fail    map[string]error
	resizes []map[string]int
	drained []string
	n       int
}

func newWorld(p *plans.Plan) *world {
	return &world{plan: p, nodes: map[string]Node{}, fail: map[string]error{}}
}

// add puts a machine of pool in state; a visible one is a node whose
// capacity running work fills up (see idle).
func (w *world) add(pool string, visible bool, alloc Resources) string {
	return w.addPhase(pool, state.PhaseJoined, visible, alloc)
}

func (w *world) addPhase(pool string, phase state.Phase, visible bool, alloc Resources) string {
	w.n++
	id := fmt.Sprintf("%s-%d", pool, w.n)
	if visible {
		w.nodes[id] = Node{Name: id, Allocatable: alloc, Allocated: alloc, Manager: pool == "managers",
			Tasks: []Task{{ID: "filler-" + id, Requests: alloc}}}
	}
	w.machines = append(w.machines, state.Machine{ID: id, Pool: pool, Phase: phase})
	return id
}

// idle empties a node.
func (w *world) idle(id string) {
	n := w.nodes[id]
	n.Allocated, n.Tasks = Resources{}, nil
	w.nodes[id] = n
}

// boot makes every joined machine the orchestrator does not show yet a
// node of the given shape; the pending work they were made for fills them.
func (w *world) boot(alloc Resources) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.machines {
		if _, ok := w.nodes[m.ID]; !ok && m.Phase == state.PhaseJoined {
			w.nodes[m.ID] = Node{Name: m.ID, Allocatable: alloc, Allocated: alloc, Tasks: []Task{{ID: "filler-" + m.ID, Requests: alloc}}}
		}
	}
}

func (w *world) Snapshot(context.Context) (Snapshot, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s Snapshot
	s.Pending = slices.Clone(w.pending)
	for _, name := range slices.Sorted(maps.Keys(w.nodes)) {
		s.Nodes = append(s.Nodes, w.nodes[name])
	}
	return s, nil
}

func (w *world) Watch(ctx context.Context, _ func()) error { <-ctx.Done(); return ctx.Err() }

func (w *world) Drain(_ context.Context, node string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drained = append(w.drained, node)
	return nil
}

func (w *world) Read(context.Context) (*state.State, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return &state.State{Machines: slices.Clone(w.machines)}, nil
}

func (w *world) Resize(_ context.Context, _ *plans.Plan, sizes map[string]int, remove []string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.resizes = append(w.resizes, maps.Clone(sizes))
	for pool, n := range sizes {
		var have []int
		for i, m := range w.machines {
			if m.Pool == pool {
				have = append(have, i)
			}
		}
		if err := w.fail[pool]; err != nil && n > len(have) {
			// The engine records intents, then the cloud refuses.
			for range n - len(have) {
				w.addPhase(pool, state.PhaseIntent, false, Resources{})
			}
			return err
		}
		// A run that succeeds leaves its machines joined; the orchestrator
		// shows them a moment later (boot).
		for range n - len(have) {
			w.add(pool, false, Resources{})
		}
		// Shrink: the drained first, then unfinished ones.
		drop := len(have) - n
		w.machines = slices.DeleteFunc(w.machines, func(m state.Machine) bool {
			if drop > 0 && m.Pool == pool && (slices.Contains(remove, m.ID) || m.Phase == state.PhaseIntent) {
				drop--
				delete(w.nodes, m.ID)
				return true
			}
			return false
		})
	}
	return nil
}

func (w *world) count(pool string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.machines {
		if m.Pool == pool {
			n++
		}
	}
	return n
}

func twoCloudPlan() *plans.Plan {
	return &plans.Plan{Cluster: plans.Cluster{Name: "t"}, Pools: []plans.Pool{
		{Name: "managers", Provider: "aws", Role: providers.RoleManager, Count: 1},
		{Name: "a", Provider: "aws", Role: providers.RoleWorker, Count: 1,
			Autoscale: &plans.PoolAutoscale{Min: 1, Max: 5, Priority: 10, MilliCPU: 2000, MemoryBytes: 4 * gib}},
		{Name: "b", Provider: "gcp", Role: providers.RoleWorker, Count: 0,
			Autoscale: &plans.PoolAutoscale{Min: 0, Max: 5, Priority: 1, MilliCPU: 2000, MemoryBytes: 4 * gib}},
	}}
}

type clock struct{ t time.Time }

// start is a cluster of one busy manager at a fixed time.
func start(p *plans.Plan) (*clock, *world) {
	w := newWorld(p)
	w.add("managers", true, res(2000, 4))
	return &clock{t: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}, w
}

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newLoop(w *world, c *clock) *Loop {
	return &Loop{
		Plan: w.plan, Source: w, State: w, Actuator: w,
		Planner:   Planner{Expander: Priority{}, Backoff: &Backoff{Now: c.now}},
		ScaleDown: ScaleDown{UnneededTime: time.Minute},
		Cooldown:  30 * time.Second,
		Now:       c.now,
	}
}

func TestLoopScalesUpOnceForABurst(t *testing.T) {
	t.Parallel()
	c, w := start(twoCloudPlan())
	w.add("a", true, res(2000, 4))
	w.pending = tasks("web", 4, res(1000, 1), nil) // 2 machines' worth
	l := newLoop(w, c)
	ctx := context.Background()

	out, err := l.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out.Grew["a"] != 3 {
		t.Fatalf("grew %v, want pool a to 3 (1 + 2 new); reason: %s", out.Grew, out.Decision.Reason)
	}
	// The tasks stay pending while the machines boot: those machines count
	// as capacity, so the next passes add nothing.
	for range 3 {
		c.advance(time.Second)
		out, err = l.Pass(ctx)
		if err != nil || len(out.Grew) != 0 {
			t.Fatalf("pass while machines boot grew %v (err %v): a burst must not over-provision; reason: %s", out.Grew, err, out.Decision.Reason)
		}
	}
	if w.count("a") != 3 || len(w.resizes) != 1 {
		t.Fatalf("pool a has %d machines after %d resizes, want 3 after 1", w.count("a"), len(w.resizes))
	}
}

func TestLoopFailsOverOnQuota(t *testing.T) {
	t.Parallel()
	c, w := start(twoCloudPlan())
	w.add("a", true, res(2000, 4))
	w.pending = tasks("web", 4, res(1000, 1), nil)
	w.fail["a"] = &providers.Error{Kind: providers.ErrQuota, Cloud: "aws", Location: "us-east-1", Pool: "a", Code: "InstanceLimitExceeded", Message: "limit 1"}
	l := newLoop(w, c)
	ctx := context.Background()

	out, err := l.Pass(ctx)
	if err != nil || !out.Again {
		t.Fatalf("first pass: again=%v err=%v; a quota error must back the pool off and ask for another pass", out.Again, err)
	}
	out, err = l.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out.Grew["b"] != 2 || out.Grew["a"] != 1 {
		t.Fatalf("failover grew %v, want b to 2 and a back to its 1 joined machine", out.Grew)
	}
	if !strings.Contains(out.Decision.Reason, "pool a backed off") || !strings.Contains(out.Decision.Reason, "pool b: 2 nodes") {
		t.Errorf("decision reason does not say why: %s", out.Decision.Reason)
	}
	if w.count("a") != 1 || w.count("b") != 2 {
		t.Errorf("pools a=%d b=%d, want 1 and 2", w.count("a"), w.count("b"))
	}
	// Once the backoff expires, pool a is tried first again.
	w.boot(res(2000, 4))
	w.mu.Lock()
	w.pending = tasks("api", 2, res(1000, 1), nil)
	w.mu.Unlock()
	c.advance(DefaultBackoffInitial + time.Second)
	out, err = l.Pass(ctx)
	if err != nil {
		t.Fatalf("pass after backoff: %v", err)
	}
	if out.Grew["a"] != 2 {
		t.Errorf("after the backoff expired the loop grew %v, want pool a (priority) tried again", out.Grew)
	}
}

func TestLoopScalesDown(t *testing.T) {
	t.Parallel()
	c, w := start(twoCloudPlan())
	busy := w.add("a", true, res(2000, 4))
	n := w.nodes[busy]
	n.Allocated, n.Tasks = res(1500, 1), []Task{{ID: "db", Requests: res(1500, 1)}}
	w.nodes[busy] = n
	idle1 := w.add("a", true, res(2000, 4))
	idle2 := w.add("b", true, res(2000, 4))
	w.idle(idle1)
	w.idle(idle2)
	l := newLoop(w, c)
	ctx := context.Background()

	for _, step := range []time.Duration{0, 30 * time.Second} {
		c.advance(step)
		if out, err := l.Pass(ctx); err != nil || len(out.Removed) != 0 {
			t.Fatalf("removed %v (err %v) before the unneeded time", out.Removed, err)
		}
	}
	c.advance(31 * time.Second)
	out, err := l.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out.Removed)
	if want := []string{idle1, idle2}; !slices.Equal(out.Removed, want) {
		t.Fatalf("removed %v, want %v (idle, above min; never the manager or the busy node)", out.Removed, want)
	}
	if !slices.Equal(w.drained, out.Removed) && len(w.drained) != 2 {
		t.Errorf("drained %v before removing %v", w.drained, out.Removed)
	}
	if w.count("a") != 1 || w.count("b") != 0 || w.count("managers") != 1 {
		t.Errorf("pools a=%d b=%d managers=%d, want 1 0 1", w.count("a"), w.count("b"), w.count("managers"))
	}
	// Cooldown: fresh idle capacity is not removed right after a change.
	late := w.add("b", true, res(2000, 4))
	w.idle(late)
	c.advance(61 * time.Second) // unneeded long enough, but...
	l.lastChange = c.t.Add(-10 * time.Second)
	if out, _ := l.Pass(ctx); slices.Contains(out.Removed, late) {
		t.Errorf("node %s removed 10s after a change, within the 30s cooldown", late)
	}
}

func TestLoopFence(t *testing.T) {
	t.Parallel()
	c, w := start(twoCloudPlan())
	w.pending = tasks("web", 2, res(1000, 1), nil)
	l := newLoop(w, c)
	l.Fence = func(context.Context) error { return errors.New("lost the lease") }
	if _, err := l.Pass(context.Background()); err == nil || !strings.Contains(err.Error(), "lost the lease") {
		t.Fatalf("pass err = %v, want the fence's refusal", err)
	}
	if len(w.resizes) != 0 {
		t.Fatalf("a fenced replica resized the cluster: %v", w.resizes)
	}
}

func TestLoopLearnsShapeFromNodes(t *testing.T) {
	t.Parallel()
	p := twoCloudPlan()
	p.Pools[1].Autoscale.MilliCPU, p.Pools[1].Autoscale.MemoryBytes = 0, 0 // a: learn it
	p.Pools[2].Autoscale.MilliCPU = 0                                      // b: cannot learn, no node
	c, w := start(p)
	w.add("a", true, res(4000, 8))
	w.pending = tasks("big", 2, res(3000, 6), nil)
	out, err := newLoop(w, c).Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if out.Grew["a"] != 3 {
		t.Errorf("grew %v, want a to 3: its shape (4 CPU, 8 GiB) learned from its node fits one 3-CPU task each", out.Grew)
	}
	if !strings.Contains(out.Decision.Reason, "pool b: machine shape unknown") {
		t.Errorf("reason does not explain why pool b was skipped: %s", out.Decision.Reason)
	}
}

// A node that was busy while the loop could not scale down (pending work,
// cooldown) must be idle for the whole unneeded time again.
func TestLoopUnneededTimeRestartsAfterBusy(t *testing.T) {
	t.Parallel()
	c, w := start(twoCloudPlan())
	w.add("a", true, res(2000, 4))
	node := w.add("a", true, res(2000, 4))
	w.idle(node)
	l := newLoop(w, c)
	ctx := context.Background()
	l.Pass(ctx) // idle since now
	// Busy for a while, during a cooldown.
	c.advance(20 * time.Second)
	l.lastChange = c.t
	busy := w.nodes[node]
	w.nodes[node] = Node{Name: node, Allocatable: busy.Allocatable, Allocated: res(2000, 4), Tasks: []Task{{ID: "x", Requests: res(2000, 4)}}}
	l.Pass(ctx)
	// Idle again: 50s later it has been unneeded for 50s, not 70s.
	c.advance(10 * time.Second)
	w.idle(node)
	l.Pass(ctx)
	c.advance(50 * time.Second)
	if out, _ := l.Pass(ctx); len(out.Removed) != 0 {
		t.Fatalf("removed %v after 50s idle (unneeded time 60s): the busy spell did not restart the clock", out.Removed)
	}
	c.advance(11 * time.Second)
	if out, _ := l.Pass(ctx); !slices.Equal(out.Removed, []string{node}) {
		t.Fatalf("removed %v, want %s once idle for the unneeded time", out.Removed, node)
	}
}

// Machines a failed run left unfinished are resumed, spaced out, and count
// as capacity meanwhile.
func TestLoopResumesUnfinished(t *testing.T) {
	t.Parallel()
	c, w := start(twoCloudPlan())
	w.add("a", true, res(2000, 4))
	w.addPhase("a", state.PhaseCreated, false, Resources{}) // its bootstrap failed
	w.pending = tasks("web", 2, res(1000, 1), nil)          // fits the unfinished machine
	l := newLoop(w, c)
	ctx := context.Background()
	out, err := l.Pass(ctx)
	if err != nil || !out.Resumed || len(out.Grew) != 0 {
		t.Fatalf("pass: resumed=%v grew=%v err=%v; want the unfinished machine resumed and nothing new", out.Resumed, out.Grew, err)
	}
	if len(w.resizes) != 1 || len(w.resizes[0]) != 0 {
		t.Fatalf("resizes %v, want one converge with no size change", w.resizes)
	}
	c.advance(10 * time.Second)
	if out, _ := l.Pass(ctx); out.Resumed {
		t.Error("resumed again 10s later: a failing bootstrap would be hammered")
	}
	c.advance(resumeInterval)
	if out, _ := l.Pass(ctx); !out.Resumed {
		t.Error("not resumed again after the resume interval")
	}
}

// A reloaded plan's pool bounds apply from the next pass.
func TestLoopReloadsPlan(t *testing.T) {
	t.Parallel()
	c, w := start(twoCloudPlan())
	w.add("a", true, res(2000, 4))
	w.pending = tasks("web", 8, res(1000, 1), nil) // 4 machines' worth
	l := newLoop(w, c)
	edited := twoCloudPlan()
	edited.Pool("a").Autoscale.Max = 2
	edited.Pool("b").Autoscale.Max = 1
	l.Reload = func() (*plans.Plan, error) { return edited, nil }
	out, err := l.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if out.Grew["a"] != 2 || out.Grew["b"] != 1 {
		t.Errorf("grew %v, want a to its new max 2 and b to its new max 1", out.Grew)
	}
	if l.Plan != edited {
		t.Error("the loop kept the old plan")
	}
	// A plan that fails to load keeps the current one.
	l.Reload = func() (*plans.Plan, error) { return nil, errors.New("pools[1].autoscale.max: required") }
	if _, err := l.Pass(context.Background()); err != nil || l.Plan != edited {
		t.Errorf("a broken plan edit stopped the loop (%v) or replaced the plan", err)
	}
}
