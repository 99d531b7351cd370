package autoscaler

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers"
)

// refResult is what a decision does with the pending tasks: the scale-ups,
// the tasks placed on existing nodes or machines being created, and the IDs
// left waiting or unschedulable, in decision order.
type refResult struct {
	scaleUps      []ScaleUp
	covered       int
	waiting       []string
	unschedulable []string
}

// referenceDecide is Decide written the plain way, with none of its speed:
// one task at a time, first fit by a linear scan over every bin, no groups,
// no index. It shares with Decide only the model (Task.accepts, FitsIn) and
// the expander it is given. TestDecideMatchesReference holds Decide to it.
func referenceDecide(p Planner, d Demand) refResult {
	exp := p.Expander
	if exp == nil {
		exp = LeastWaste{}
	}
	var out refResult

	// First fit decreasing: by dominant share of the largest machine, then
	// CPU, then memory, larger first; identical tasks (same requests,
	// selector and tolerations) stay together in arrival order, and sets
	// of identical tasks that tie go by their first task's ID.
	var big Resources
	for _, pl := range d.Pools {
		big = Resources{max(big.MilliCPU, pl.Allocatable.MilliCPU), max(big.MemoryBytes, pl.Allocatable.MemoryBytes)}
	}
	for _, n := range d.Nodes {
		big = Resources{max(big.MilliCPU, n.Allocatable.MilliCPU), max(big.MemoryBytes, n.Allocatable.MemoryBytes)}
	}
	share := func(r Resources) float64 {
		return max(float64(r.MilliCPU)/float64(max(big.MilliCPU, 1)), float64(r.MemoryBytes)/float64(max(big.MemoryBytes, 1)))
	}
	firstOf := map[string]string{} // identity -> first task's ID
	identity := make([]string, len(d.Pending))
	for i, t := range d.Pending {
		sel := slices.Sorted(maps.Keys(t.NodeSelector))
		for j, k := range sel {
			sel[j] = k + "=" + t.NodeSelector[k]
		}
		identity[i] = fmt.Sprintf("%d/%d/%q/%q", t.Requests.MilliCPU, t.Requests.MemoryBytes, sel, t.Tolerations)
		if _, ok := firstOf[identity[i]]; !ok {
			firstOf[identity[i]] = t.ID
		}
	}
	order := make([]int, len(d.Pending))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ra, rb := d.Pending[a].Requests, d.Pending[b].Requests
		if c := cmp.Compare(share(rb), share(ra)); c != 0 {
			return c
		}
		if c := cmp.Compare(rb.MilliCPU, ra.MilliCPU); c != 0 {
			return c
		}
		if c := cmp.Compare(rb.MemoryBytes, ra.MemoryBytes); c != 0 {
			return c
		}
		return cmp.Compare(firstOf[identity[a]], firstOf[identity[b]])
	})

	// Existing nodes, then machines being created, in order.
	type refBin struct {
		free   Resources
		labels map[string]string
		taints []Taint
	}
	var bins []refBin
	for _, n := range d.Nodes {
		bins = append(bins, refBin{n.Allocatable.Sub(n.Allocated), n.Labels, n.Taints})
	}
	size := 0
	for _, pl := range d.Pools {
		size += pl.Current + pl.InFlight
		for range pl.InFlight {
			bins = append(bins, refBin{pl.Allocatable, pl.Labels, pl.Taints})
		}
	}
	placed := make([]bool, len(d.Pending))
	for _, ti := range order {
		t := &d.Pending[ti]
		for bi := range bins {
			b := &bins[bi]
			if t.accepts(b.labels, b.taints) && t.Requests.FitsIn(b.free) {
				b.free = b.free.Sub(t.Requests)
				placed[ti] = true
				out.covered++
				break
			}
		}
	}
	fitsPool := func(t *Task, pl *PoolShape) bool {
		return t.accepts(pl.Labels, pl.Taints) && t.Requests.FitsIn(pl.Allocatable)
	}
	unschedulable := make([]bool, len(d.Pending))
	for ti := range d.Pending {
		unschedulable[ti] = !placed[ti] && !slices.ContainsFunc(d.Pools, func(pl PoolShape) bool { return fitsPool(&d.Pending[ti], &pl) })
	}

	// Rounds: every pool that can grow packs the tasks left onto new
	// machines; the expander picks one; repeat until none places a task.
	clusterRoom := math.MaxInt
	if p.MaxNodes > 0 {
		clusterRoom = max(p.MaxNodes-size, 0)
	}
	added := map[string]int{}
	for {
		var opts []Option
		var takes [][]int
		for pi := range d.Pools {
			pl := &d.Pools[pi]
			if _, off := p.backedOff(pl.Name); off {
				continue
			}
			room := min(pl.Max-pl.Current-pl.InFlight-added[pl.Name], clusterRoom)
			var machines []Resources
			var took []int
			var used Resources
			for _, ti := range order {
				t := &d.Pending[ti]
				if placed[ti] || unschedulable[ti] || !fitsPool(t, pl) {
					continue
				}
				at := slices.IndexFunc(machines, func(free Resources) bool { return t.Requests.FitsIn(free) })
				if at < 0 && len(machines) < room {
					at = len(machines)
					machines = append(machines, pl.Allocatable)
				}
				if at < 0 {
					continue
				}
				machines[at] = machines[at].Sub(t.Requests)
				took = append(took, ti)
				used = used.Add(t.Requests)
			}
			if len(took) == 0 {
				continue
			}
			total := pl.Allocatable.Mul(int64(len(machines)))
			idle := func(u, t int64) float64 {
				if t <= 0 {
					return 0
				}
				return 1 - float64(u)/float64(t)
			}
			waste := (idle(used.MilliCPU, total.MilliCPU) + idle(used.MemoryBytes, total.MemoryBytes)) / 2
			opts = append(opts, Option{Pool: *pl, Nodes: len(machines), Tasks: len(took), Waste: waste})
			takes = append(takes, took)
		}
		if len(opts) == 0 {
			break
		}
		i, why := exp.Choose(opts)
		for _, ti := range takes[i] {
			placed[ti] = true
		}
		o := opts[i]
		added[o.Pool.Name] += o.Nodes
		clusterRoom -= o.Nodes
		out.scaleUps = append(out.scaleUps, ScaleUp{Pool: o.Pool.Name, Provider: o.Pool.Provider, Nodes: o.Nodes, Tasks: o.Tasks, Why: why})
	}
	for _, ti := range order {
		switch {
		case placed[ti]:
		case unschedulable[ti]:
			out.unschedulable = append(out.unschedulable, d.Pending[ti].ID)
		default:
			out.waiting = append(out.waiting, d.Pending[ti].ID)
		}
	}
	return out
}

// randomDemand is a small cluster with everything a decision looks at drawn
// at random: pools with labels, taints, limits, machines in flight; nodes of
// those pools and others, some over-committed, some with a hostname label;
// replicated services and one-off tasks with selectors, tolerations, zero
// requests, sizes larger than any machine; a cluster cap, an expander, a
// pool backed off. Sizes are coarse so ties in the order are common.
func randomDemand(r *rand.Rand) (Planner, Demand) {
	shapes := []Resources{res(2000, 4), res(2000, 8), res(4000, 16), res(8000, 32), res(8000, 64), res(16000, 64)}
	labelSets := []map[string]string{nil, nil, {"tier": "big"}, {"zone": "a"}, {"zone": "b", "tier": "big"}}
	taintSets := [][]Taint{nil, nil, nil, {{"spot", "true"}}, {{"gpu", "yes"}, {"spot", "true"}}}
	var d Demand
	for i := range 1 + r.IntN(5) {
		d.Pools = append(d.Pools, PoolShape{
			Name: fmt.Sprintf("pool-%d", i), Provider: "sim",
			Allocatable: shapes[r.IntN(len(shapes))],
			Labels:      labelSets[r.IntN(len(labelSets))],
			Taints:      taintSets[r.IntN(len(taintSets))],
			Max:         r.IntN(40), Current: r.IntN(6), InFlight: r.IntN(3),
			PricePerHour: float64(r.IntN(4)) * 0.25, Priority: r.IntN(3),
		})
	}
	for i := range r.IntN(80) {
		n := Node{Name: fmt.Sprintf("n-%d", i)}
		if pi := r.IntN(len(d.Pools) + 1); pi < len(d.Pools) {
			pl := d.Pools[pi]
			n.Pool, n.Allocatable, n.Labels, n.Taints = pl.Name, pl.Allocatable, maps.Clone(pl.Labels), pl.Taints
		} else {
			n.Allocatable = shapes[r.IntN(len(shapes))]
			n.Labels = maps.Clone(labelSets[r.IntN(len(labelSets))])
			n.Taints = taintSets[r.IntN(len(taintSets))]
		}
		if r.IntN(4) == 0 {
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			n.Labels["hostname"] = n.Name
		}
		// 0–120% reserved: some nodes are over-committed.
		n.Allocated = Resources{n.Allocatable.MilliCPU * int64(r.IntN(121)) / 100, n.Allocatable.MemoryBytes * int64(r.IntN(121)) / 100}
		d.Nodes = append(d.Nodes, n)
	}
	selectors := []map[string]string{nil, nil, nil, {"tier": "big"}, {"zone": "a"}, {"hostname": "n-3"}, {"gpu": "true"}}
	tolerations := [][]Toleration{nil, nil, {{Key: "spot"}}, {{Key: "spot", Value: "true"}, {Key: "gpu"}}}
	size := func() Resources {
		switch r.IntN(12) {
		case 0:
			return Resources{0, int64(1+r.IntN(8)) << 29}
		case 1:
			return Resources{int64(250 * (1 + r.IntN(8))), 0}
		case 2:
			return res(int64(1000*(1+r.IntN(20))), int64(1+r.IntN(80)))
		}
		return Resources{int64(250 * (1 + r.IntN(16))), int64(1+r.IntN(32)) << 29}
	}
	for s := range r.IntN(60) {
		req, sel, tol := size(), selectors[r.IntN(len(selectors))], tolerations[r.IntN(len(tolerations))]
		replicas := 1
		if r.IntN(3) == 0 {
			replicas = 1 + r.IntN(30)
		}
		for k := range replicas {
			d.Pending = append(d.Pending, Task{ID: fmt.Sprintf("t%02d.%d", s, k), Requests: req, NodeSelector: sel, Tolerations: tol})
		}
	}
	r.Shuffle(len(d.Pending), func(i, j int) { d.Pending[i], d.Pending[j] = d.Pending[j], d.Pending[i] })

	var p Planner
	if r.IntN(3) == 0 {
		p.MaxNodes = r.IntN(60)
	}
	p.Expander = []Expander{LeastWaste{}, Price{}, Priority{}}[r.IntN(3)]
	if r.IntN(4) == 0 {
		now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		p.Backoff = &Backoff{Now: func() time.Time { return now }}
		p.Backoff.Failed(d.Pools[r.IntN(len(d.Pools))].Name, providers.ErrQuota)
	}
	return p, d
}

func unplacedIDs(us []Unplaced) []string {
	var ids []string
	for _, u := range us {
		ids = append(ids, u.TaskIDs...)
	}
	return ids
}

// TestDecideMatchesReference: on randomized demand (seeded, so a failure
// replays), Decide — grouped tasks, fit indexes, remembered misses — makes
// the same decision as the plain one-task-at-a-time first fit decreasing of
// referenceDecide: the same scale-ups, the same tasks covered by existing
// capacity, the same tasks left waiting or unschedulable.
func TestDecideMatchesReference(t *testing.T) {
	t.Parallel()
	for seed := range uint64(400) {
		p, d := randomDemand(rand.New(rand.NewPCG(seed, 10)))
		want := referenceDecide(p, d)
		got := p.Decide(d)
		fail := func(what string, g, w any) {
			t.Helper()
			t.Fatalf("seed %d: %s = %v, want %v\n(%d pending, %d nodes, %d pools; reason %q)", seed, what, g, w, len(d.Pending), len(d.Nodes), len(d.Pools), got.Reason)
		}
		if !slices.Equal(got.ScaleUps, want.scaleUps) {
			fail("scale-ups", got.ScaleUps, want.scaleUps)
		}
		if ids := unplacedIDs(got.Waiting); !slices.Equal(ids, want.waiting) {
			fail("waiting", ids, want.waiting)
		}
		if ids := unplacedIDs(got.Unschedulable); !slices.Equal(ids, want.unschedulable) {
			fail("unschedulable", ids, want.unschedulable)
		}
		note := fmt.Sprintf("%d pending tasks fit existing nodes", want.covered)
		if strings.Contains(got.Reason, note) != (want.covered > 0) {
			fail("reason", got.Reason, note)
		}
	}
}

// raggedDemand is benchDemand's worst case at a size the reference can
// check: nodes left with ragged free capacity, tasks of distinct sizes,
// some behind a label, pools too small to take them all. Walks of the fit
// indexes are misled there, so the proportions are built and used.
func raggedDemand(r *rand.Rand) (Planner, Demand) {
	shapes := []Resources{res(2000, 8), res(4000, 16), res(8000, 32), res(8000, 64)}
	var d Demand
	for i, s := range shapes {
		p := PoolShape{Name: fmt.Sprintf("pool-%d", i), Provider: "sim", Allocatable: s, Max: 250 + r.IntN(300), Current: 150, InFlight: r.IntN(3), PricePerHour: float64(i+1) * 0.1}
		if i >= 2 {
			p.Labels = map[string]string{"tier": "big"}
		}
		d.Pools = append(d.Pools, p)
		for j := range 150 {
			used := Resources{s.MilliCPU * int64(50+r.IntN(50)) / 100, s.MemoryBytes * int64(50+r.IntN(50)) / 100}
			d.Nodes = append(d.Nodes, Node{Name: fmt.Sprintf("n-%d-%d", i, j), Pool: p.Name, Allocatable: s, Allocated: used, Labels: p.Labels})
		}
	}
	big := map[string]string{"tier": "big"}
	for k := range 3000 {
		t := Task{ID: fmt.Sprintf("t%04d", k), Requests: Resources{int64(100 + r.IntN(3900)), int64(128+r.IntN(8000)) << 20}}
		if k%10 == 0 {
			t.NodeSelector = big
		}
		d.Pending = append(d.Pending, t)
	}
	return Planner{Expander: []Expander{LeastWaste{}, Price{}, Priority{}}[r.IntN(3)]}, d
}

// TestDecideMatchesReferenceRagged: the same as TestDecideMatchesReference
// on raggedDemand, where the fit indexes build and use their proportions.
func TestDecideMatchesReferenceRagged(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		p, d := raggedDemand(rand.New(rand.NewPCG(seed, 12)))
		want := referenceDecide(p, d)
		got := p.Decide(d)
		if !slices.Equal(got.ScaleUps, want.scaleUps) {
			t.Fatalf("seed %d: scale-ups = %v, want %v", seed, got.ScaleUps, want.scaleUps)
		}
		if ids := unplacedIDs(got.Waiting); !slices.Equal(ids, want.waiting) {
			t.Fatalf("seed %d: %d waiting, want %d", seed, len(ids), len(want.waiting))
		}
		if ids := unplacedIDs(got.Unschedulable); len(ids) != 0 || len(want.unschedulable) != 0 {
			t.Fatalf("seed %d: unschedulable %d, want %d (none)", seed, len(ids), len(want.unschedulable))
		}
		if note := fmt.Sprintf("%d pending tasks fit existing nodes", want.covered); !strings.Contains(got.Reason, note) {
			t.Fatalf("seed %d: reason %q lacks %q", seed, got.Reason, note)
		}
	}
}
