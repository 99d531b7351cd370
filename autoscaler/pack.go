package autoscaler

import (
	"cmp"
	"maps"
	"slices"
	"strings"
)

// group is a set of identical pending tasks (same requests, selector and
// tolerations). Packing whole groups at a time is what keeps a decision over
// tens of thousands of tasks fast: a service's replicas are one group.
type group struct {
	task  Task     // representative: requests, selector, tolerations
	ids   []string // task IDs; ids[:placed] are placed
	share float64  // dominant share, for the decreasing order

	placed int
	// unschedulable is set when no pool shape can ever hold the task.
	unschedulable string
}

func (g *group) left() int { return len(g.ids) - g.placed }

type groupKey struct {
	req      Resources
	selector string
	tols     string
}

// groupTasks groups identical tasks and sorts the groups in first-fit-
// decreasing order: by dominant share of ref (the largest machine), largest
// first, then by a stable key so a decision is deterministic.
func groupTasks(tasks []Task, ref Resources) []*group {
	byKey := make(map[groupKey]*group)
	var groups []*group
	for i := range tasks {
		t := &tasks[i]
		k := groupKey{req: t.Requests}
		if len(t.NodeSelector) > 0 {
			k.selector = t.selectorString()
		}
		if len(t.Tolerations) > 0 {
			var b strings.Builder
			for _, tl := range t.Tolerations {
				b.WriteString(tl.Key + "=" + tl.Value + ";")
			}
			k.tols = b.String()
		}
		g, ok := byKey[k]
		if !ok {
			g = &group{task: Task{Requests: t.Requests, NodeSelector: t.NodeSelector, Tolerations: t.Tolerations}}
			g.share = dominantShare(t.Requests, ref)
			byKey[k] = g
			groups = append(groups, g)
		}
		g.ids = append(g.ids, t.ID)
	}
	slices.SortFunc(groups, func(a, b *group) int {
		if c := cmp.Compare(b.share, a.share); c != 0 {
			return c
		}
		if c := cmp.Compare(b.task.Requests.MilliCPU, a.task.Requests.MilliCPU); c != 0 {
			return c
		}
		if c := cmp.Compare(b.task.Requests.MemoryBytes, a.task.Requests.MemoryBytes); c != 0 {
			return c
		}
		return cmp.Compare(a.ids[0], b.ids[0])
	})
	return groups
}

func dominantShare(r, ref Resources) float64 {
	return max(float64(r.MilliCPU)/float64(max(ref.MilliCPU, 1)),
		float64(r.MemoryBytes)/float64(max(ref.MemoryBytes, 1)))
}

// bin is one node's free capacity during a simulation.
type bin struct {
	free   Resources
	labels map[string]string
	taints []Taint
}

// kind is the bins that look alike to the pending tasks: same values for the
// label keys some task selects on, same taints. Each has a fitIndex; a group
// asks only the kinds it accepts, so node-specific labels (hostnames) cost
// nothing unless a task selects on them.
type kind struct {
	labels map[string]string
	taints []Taint
	bins   []int // global bin index by leaf
	index  *fitIndex
}

// packBins places groups first fit onto bins in order (existing nodes, then
// machines being created) and returns how many tasks it placed. Identical
// tasks go as many per bin as fit, which is what FFD does for consecutive
// equal items.
func packBins(groups []*group, bins []bin) int {
	keys := map[string]bool{}
	for _, g := range groups {
		for k := range g.task.NodeSelector {
			keys[k] = true
		}
	}
	selected := slices.Sorted(maps.Keys(keys))
	byKey := map[string]*kind{}
	var kinds []*kind
	for i := range bins {
		b := &bins[i]
		var sig strings.Builder
		for _, k := range selected {
			if v, ok := b.labels[k]; ok {
				sig.WriteString(k + "=" + v + ",")
			}
		}
		sig.WriteString("|")
		for _, tn := range b.taints {
			sig.WriteString(tn.Key + "=" + tn.Value + ",")
		}
		k, ok := byKey[sig.String()]
		if !ok {
			k = &kind{labels: b.labels, taints: b.taints}
			byKey[sig.String()] = k
			kinds = append(kinds, k)
		}
		k.bins = append(k.bins, i)
	}
	for _, k := range kinds {
		k.index = newFitIndex(len(k.bins))
		for leaf, bi := range k.bins {
			k.index.set(leaf, bins[bi].free)
		}
	}
	free := make([]Resources, len(bins))
	for i := range bins {
		free[i] = bins[i].free
	}

	total := 0
	var eligible []*kind
	for _, g := range groups {
		eligible = eligible[:0]
		for _, k := range kinds {
			if g.task.accepts(k.labels, k.taints) {
				eligible = append(eligible, k)
			}
		}
		req := g.task.Requests
		for g.left() > 0 {
			// The first fitting bin in global order across the kinds.
			var at *kind
			leaf, best := -1, len(bins)
			for _, k := range eligible {
				if l := k.index.first(req); l >= 0 && k.bins[l] < best {
					at, leaf, best = k, l, k.bins[l]
				}
			}
			if at == nil {
				break
			}
			n := min(fitCount(free[best], req), int64(g.left()))
			free[best] = free[best].Sub(req.Mul(n))
			at.index.set(leaf, free[best])
			g.placed += int(n)
			total += int(n)
		}
	}
	return total
}

// poolPacking is the result of packing the unplaced groups onto new machines
// of one pool, without changing the groups.
type poolPacking struct {
	nodes int
	tasks int
	used  Resources
	taken []int // per group index
}

// packPool simulates first fit decreasing of the unplaced groups onto at most
// limit new machines of shape.
func packPool(groups []*group, shape *PoolShape, limit int) poolPacking {
	p := poolPacking{taken: make([]int, len(groups))}
	// No more machines than tasks that could go there.
	want := 0
	for _, g := range groups {
		if g.left() > 0 && g.unschedulable == "" && g.task.Requests.FitsIn(shape.Allocatable) && g.task.accepts(shape.Labels, shape.Taints) {
			want += g.left()
		}
	}
	limit = min(limit, want)
	if limit <= 0 {
		return p
	}
	index := newFitIndex(limit)
	var free []Resources
	for gi, g := range groups {
		n := int64(g.left())
		req := g.task.Requests
		if n == 0 || g.unschedulable != "" || !req.FitsIn(shape.Allocatable) || !g.task.accepts(shape.Labels, shape.Taints) {
			continue
		}
		for n > 0 {
			i := index.first(req)
			if i < 0 {
				if len(free) == limit {
					break
				}
				i = len(free) // open a new machine
				free = append(free, shape.Allocatable)
			}
			k := min(fitCount(free[i], req), n)
			free[i] = free[i].Sub(req.Mul(k))
			index.set(i, free[i])
			n -= k
			p.taken[gi] += int(k)
			p.tasks += int(k)
			p.used = p.used.Add(req.Mul(k))
		}
	}
	p.nodes = len(free)
	return p
}
