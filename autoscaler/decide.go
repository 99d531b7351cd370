package autoscaler

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Planner turns demand into a scale-up decision. Its zero value uses the
// least-waste expander, no backoff and no cluster-wide limit.
type Planner struct {
	Expander Expander // nil: LeastWaste
	Backoff  *Backoff // nil: no pool is backed off
	// MaxNodes caps the cluster's machines (existing plus being created plus
	// new) across all pools; 0 means no cap.
	MaxNodes int
}

// Demand is what a decision looks at, gathered by a demand source.
type Demand struct {
	Pending []Task
	Nodes   []Node
	Pools   []PoolShape
}

// Decision is what the autoscaler should add now, and why.
type Decision struct {
	ScaleUps []ScaleUp
	// Unschedulable tasks fit no pool shape at all: no machine of any pool
	// can ever run them. Waiting tasks fit a pool shape that cannot grow now
	// (at max, cluster max, backed off).
	Unschedulable []Unplaced
	Waiting       []Unplaced
	// Reason is one human-readable line for the decision log.
	Reason string
}

// ScaleUp adds Nodes machines to Pool for Tasks pending tasks.
type ScaleUp struct {
	Pool     string
	Provider string
	Nodes    int
	Tasks    int
	Why      string // from the expander, e.g. "least-waste 18%"
}

// Unplaced is a set of identical tasks the decision could not place, and why.
type Unplaced struct {
	TaskIDs []string
	Reason  string
}

// Decide simulates first fit decreasing of the pending tasks onto the existing
// nodes' free capacity, then onto machines being created, then onto new
// machines of each pool, choosing pools with the expander until the tasks are
// placed or no pool can grow.
func (p *Planner) Decide(d Demand) Decision {
	exp := p.Expander
	if exp == nil {
		exp = LeastWaste{}
	}
	var dec Decision
	var notes []string

	groups := groupTasks(d.Pending, largest(d))
	// Existing free capacity first, then machines being created.
	bins := make([]bin, 0, len(d.Nodes))
	for i := range d.Nodes {
		n := &d.Nodes[i]
		bins = append(bins, bin{free: n.Free(), labels: n.Labels, taints: n.Taints})
	}
	size := 0
	for i := range d.Pools {
		pl := &d.Pools[i]
		size += pl.Current + pl.InFlight
		for range pl.InFlight {
			bins = append(bins, bin{free: pl.Allocatable, labels: pl.Labels, taints: pl.Taints})
		}
	}
	if covered := packBins(groups, bins); covered > 0 {
		notes = append(notes, fmt.Sprintf("%d pending tasks fit existing nodes or machines being created", covered))
	}
	acc := acceptedByPools(d.Pools)
	markUnschedulable(groups, d.Pools, acc)

	clusterRoom := math.MaxInt
	if p.MaxNodes > 0 {
		clusterRoom = max(p.MaxNodes-size, 0)
	}
	left := newRest(groups, d.Pools, acc) // the groups still to place on new machines
	added := make(map[string]int)
	blocked := make(map[string]string) // pool -> why it cannot grow now
	for {
		var opts []Option
		var packs []poolPacking
		for i := range d.Pools {
			pl := &d.Pools[i]
			want := left.want(i)
			if want == 0 {
				continue
			}
			if st, ok := p.backedOff(pl.Name); ok {
				blocked[pl.Name] = fmt.Sprintf("pool %s backed off until %s: %v", pl.Name, st.Until.Format("15:04:05"), st.Cause)
				continue
			}
			room := pl.Max - pl.Current - pl.InFlight - added[pl.Name]
			if room <= 0 {
				blocked[pl.Name] = fmt.Sprintf("pool %s at max %d", pl.Name, pl.Max)
				continue
			}
			if clusterRoom <= 0 {
				blocked[pl.Name] = fmt.Sprintf("pool %s: cluster at max %d nodes", pl.Name, p.MaxNodes)
				continue
			}
			// No more machines than tasks that could go there.
			pk := packPool(left, i, pl.Allocatable, min(room, clusterRoom, want))
			if pk.tasks == 0 {
				continue
			}
			opts = append(opts, Option{Pool: *pl, Nodes: pk.nodes, Tasks: pk.tasks, Waste: waste(pk, pl.Allocatable)})
			packs = append(packs, pk)
		}
		if len(opts) == 0 {
			break
		}
		i, why := exp.Choose(opts)
		o := opts[i]
		left.place(packs[i])
		added[o.Pool.Name] += o.Nodes
		clusterRoom -= o.Nodes
		dec.ScaleUps = append(dec.ScaleUps, ScaleUp{Pool: o.Pool.Name, Provider: o.Pool.Provider, Nodes: o.Nodes, Tasks: o.Tasks, Why: why})
	}

	for _, g := range groups {
		if g.left() == 0 {
			continue
		}
		u := Unplaced{TaskIDs: g.ids[g.placed:], Reason: g.unschedulable}
		if u.Reason != "" {
			dec.Unschedulable = append(dec.Unschedulable, u)
			continue
		}
		u.Reason = waitingReason(g, d.Pools, blocked)
		dec.Waiting = append(dec.Waiting, u)
	}
	dec.Reason = reason(dec, notes, blocked, len(d.Pending))
	return dec
}

func (p *Planner) backedOff(pool string) (BackedOff, bool) {
	if p.Backoff == nil {
		return BackedOff{}, false
	}
	return p.Backoff.Status(pool)
}

func (p *Planner) failed(pool string, err error) bool {
	return p.Backoff != nil && p.Backoff.Failed(pool, err)
}

func (p *Planner) succeeded(pool string) {
	if p.Backoff != nil {
		p.Backoff.Succeeded(pool)
	}
}

// largest is the per-dimension largest machine, the yardstick of a task's
// dominant resource.
func largest(d Demand) Resources {
	var r Resources
	for _, pl := range d.Pools {
		r = Resources{max(r.MilliCPU, pl.Allocatable.MilliCPU), max(r.MemoryBytes, pl.Allocatable.MemoryBytes)}
	}
	for _, n := range d.Nodes {
		r = Resources{max(r.MilliCPU, n.Allocatable.MilliCPU), max(r.MemoryBytes, n.Allocatable.MemoryBytes)}
	}
	return r
}

// markUnschedulable sets the reason on groups no pool shape can ever hold,
// whatever its size or backoff.
func markUnschedulable(groups []*group, pools []PoolShape, acc *accepted) {
	for _, g := range groups {
		if g.left() == 0 {
			continue
		}
		var matching int
		var biggest Resources
		fits := false
		for i := range pools {
			pl := &pools[i]
			if !acc.by(i, g) {
				continue
			}
			matching++
			biggest = Resources{max(biggest.MilliCPU, pl.Allocatable.MilliCPU), max(biggest.MemoryBytes, pl.Allocatable.MemoryBytes)}
			if g.task.Requests.FitsIn(pl.Allocatable) {
				fits = true
				break
			}
		}
		switch {
		case fits:
		case len(pools) == 0:
			g.unschedulable = "no pool can grow: the plan has no autoscaled pools"
		case matching == 0 && len(g.task.NodeSelector) > 0:
			g.unschedulable = fmt.Sprintf("no pool has labels %s (or tolerates its taints)", g.task.selectorString())
		case matching == 0:
			g.unschedulable = "no pool's taints are tolerated"
		default:
			g.unschedulable = fmt.Sprintf("requests %v, more than any matching pool's machine (largest %v)", g.task.Requests, biggest)
		}
	}
}

func waitingReason(g *group, pools []PoolShape, blocked map[string]string) string {
	var why []string
	for i := range pools {
		pl := &pools[i]
		if b, ok := blocked[pl.Name]; ok && g.task.accepts(pl.Labels, pl.Taints) && g.task.Requests.FitsIn(pl.Allocatable) {
			why = append(why, b)
		}
	}
	if len(why) == 0 {
		return "no pool that fits can grow now"
	}
	return strings.Join(why, "; ")
}

// waste is the mean of the unused CPU and memory fractions of the new machines.
func waste(pk poolPacking, shape Resources) float64 {
	total := shape.Mul(int64(pk.nodes))
	frac := func(used, tot int64) float64 {
		if tot <= 0 {
			return 0
		}
		return 1 - float64(used)/float64(tot)
	}
	return (frac(pk.used.MilliCPU, total.MilliCPU) + frac(pk.used.MemoryBytes, total.MemoryBytes)) / 2
}

func reason(dec Decision, notes []string, blocked map[string]string, pending int) string {
	if pending == 0 {
		return "no pending tasks"
	}
	var parts []string
	for _, s := range dec.ScaleUps {
		parts = append(parts, fmt.Sprintf("pool %s: %d nodes for %d pending tasks (%s)", s.Pool, s.Nodes, s.Tasks, s.Why))
	}
	keys := make([]string, 0, len(blocked))
	for k := range blocked {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, blocked[k])
	}
	parts = append(parts, notes...)
	if n := countTasks(dec.Waiting); n > 0 {
		parts = append(parts, fmt.Sprintf("%d tasks wait: no pool that fits can grow", n))
	}
	for _, u := range dec.Unschedulable {
		parts = append(parts, fmt.Sprintf("%d tasks unschedulable: %s", len(u.TaskIDs), u.Reason))
	}
	return strings.Join(parts, "; ")
}

func countTasks(us []Unplaced) int {
	n := 0
	for _, u := range us {
		n += len(u.TaskIDs)
	}
	return n
}
