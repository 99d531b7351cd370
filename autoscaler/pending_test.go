package autoscaler

import (
	"context"
	"testing"
	"time"

	"github.com/provisionhq/provision/plans"
)

// pendingToCreate measures how long one pass of the loop takes from its
// start, when it reads pending work, to calling the actuator, on a cluster
// of 1,000 nodes that have all been under the scale-down threshold for
// longer than the unneeded time (so the pass also weighs every one of them,
// 18 tasks each, for removal), with 500 tasks pending that only new machines
// can hold. The source, state and actuator are the in-memory fakes of the
// loop's tests: this is the loop's own time (reading the fakes, the view,
// the decision, scale-down candidates, metrics, the actuator call), not the
// orchestrator's or the cloud's.
func pendingToCreate(tb testing.TB) time.Duration {
	tb.Helper()
	plan := twoCloudPlan()
	a := plan.Pool("a")
	a.Autoscale.Max = 2000
	shape := res(4000, 16)
	a.Autoscale.MilliCPU, a.Autoscale.MemoryBytes = shape.MilliCPU, shape.MemoryBytes
	c, w := start(plan)
	for range 1000 {
		id := w.add("a", true, shape)
		n := w.nodes[id]
		n.Tasks = tasks(id, 18, Resources{100, gib / 4}, nil)
		n.Allocated = Resources{1800, 18 * gib / 4} // 45% of CPU, 28% of memory
		w.nodes[id] = n
	}
	l := newLoop(w, c)
	ctx := context.Background()
	if _, err := l.Pass(ctx); err != nil { // the nodes are unneeded from now
		tb.Fatal(err)
	}
	c.advance(2 * time.Minute) // past the unneeded time and the cooldown
	w.pending = tasks("big", 500, res(3000, 4), nil)
	var created time.Time
	l.Actuator = actuatorFunc(func(ctx context.Context, p *plans.Plan, sizes map[string]int, remove []string) error {
		created = time.Now()
		return w.Resize(ctx, p, sizes, remove)
	})
	begin := time.Now()
	out, err := l.Pass(ctx)
	if err != nil || out.Grew["a"] != 1000+500 {
		tb.Fatalf("grew %v (err %v), want pool a to 1,500 machines; reason: %s", out.Grew, err, out.Decision.Reason)
	}
	return created.Sub(begin)
}

// TestPendingToCreateWith1000Nodes: the bar, pending work to the
// create call in under a second with 1,000 nodes. The loop's own part takes
// tens of milliseconds (BenchmarkPendingToCreate), so this only fails on a
// real regression, not on a busy machine.
func TestPendingToCreateWith1000Nodes(t *testing.T) {
	t.Parallel()
	if d := pendingToCreate(t); d > time.Second {
		t.Errorf("pending to create call took %v with 1,000 nodes, want under 1s", d)
	}
}

// BenchmarkPendingToCreate reports pendingToCreate as ms-to-create; ns/op is
// the same pass plus its setup.
func BenchmarkPendingToCreate(b *testing.B) {
	var total time.Duration
	for range b.N {
		total += pendingToCreate(b)
	}
	b.ReportMetric(total.Seconds()*1000/float64(b.N), "ms-to-create")
}

type actuatorFunc func(ctx context.Context, p *plans.Plan, sizes map[string]int, remove []string) error

func (f actuatorFunc) Resize(ctx context.Context, p *plans.Plan, sizes map[string]int, remove []string) error {
	return f(ctx, p, sizes, remove)
}
