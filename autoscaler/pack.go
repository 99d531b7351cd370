package autoscaler

import (
	"cmp"
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
	slices.SortStableFunc(groups, func(a, b *group) int {
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

// suffixMin returns, for each group index i, the smallest CPU and the smallest
// memory requested by the unplaced groups from i on: a bin with less free than
// that can take nothing more and is dropped from the scan.
func suffixMin(groups []*group) []Resources {
	out := make([]Resources, len(groups)+1)
	out[len(groups)] = Resources{1 << 62, 1 << 62}
	for i := len(groups) - 1; i >= 0; i-- {
		out[i] = out[i+1]
		if groups[i].left() > 0 && groups[i].unschedulable == "" {
			r := groups[i].task.Requests
			out[i] = Resources{min(out[i].MilliCPU, r.MilliCPU), min(out[i].MemoryBytes, r.MemoryBytes)}
		}
	}
	return out
}

// bin is one node's free capacity during a simulation.
type bin struct {
	free   Resources
	labels map[string]string
	taints []Taint
}

// packBins places groups first fit onto bins in order (existing nodes, then
// machines being created) and returns how many tasks it placed. Identical
// tasks are placed as many per bin as fit, which is what FFD does for
// consecutive equal items; full bins leave the scan.
func packBins(groups []*group, bins []bin) int {
	mins := suffixMin(groups)
	open := slices.Clone(bins)
	total := 0
	for i, g := range groups {
		if g.unschedulable != "" {
			continue
		}
		for j := range open {
			if g.left() == 0 {
				break
			}
			b := &open[j]
			k := fitCount(b.free, g.task.Requests)
			if k == 0 || !g.task.accepts(b.labels, b.taints) {
				continue
			}
			k = min(k, int64(g.left()))
			b.free = b.free.Sub(g.task.Requests.Mul(k))
			g.placed += int(k)
			total += int(k)
		}
		next := mins[i+1]
		open = slices.DeleteFunc(open, func(b bin) bool {
			return b.free.MilliCPU < next.MilliCPU || b.free.MemoryBytes < next.MemoryBytes
		})
	}
	return total
}

// binClass is n identical new machines with the same free capacity. New
// machines of one pool start identical and stay in few classes, so packing
// thousands of them costs a few entries per group.
type binClass struct {
	free Resources
	n    int
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
	mins := suffixMin(groups)
	var classes []binClass
	for gi, g := range groups {
		n := int64(g.left())
		if n == 0 || g.unschedulable != "" || !g.task.accepts(shape.Labels, shape.Taints) {
			continue
		}
		req := g.task.Requests
		if fitCount(shape.Allocatable, req) == 0 {
			continue
		}
		place := func(cnt int64) {
			p.taken[gi] += int(cnt)
			p.tasks += int(cnt)
			p.used = p.used.Add(req.Mul(cnt))
			n -= cnt
		}
		// First onto machines already opened in this simulation.
		var next []binClass
		for ci, c := range classes {
			if n == 0 {
				next = append(next, classes[ci:]...)
				break
			}
			k := fitCount(c.free, req)
			if k == 0 {
				next = append(next, c)
				continue
			}
			var placed int64
			next, placed = fill(next, c.free, c.n, k, n, req)
			place(placed)
		}
		classes = next
		// Then onto new machines, within the limit.
		if n > 0 && p.nodes < limit {
			k := fitCount(shape.Allocatable, req)
			need := int((n + k - 1) / k)
			opened := min(need, limit-p.nodes)
			p.nodes += opened
			var placed int64
			classes, placed = fill(classes, shape.Allocatable, opened, k, n, req)
			place(placed)
		}
		least := mins[gi+1]
		classes = slices.DeleteFunc(mergeClasses(classes), func(c binClass) bool {
			return c.free.MilliCPU < least.MilliCPU || c.free.MemoryBytes < least.MemoryBytes
		})
	}
	return p
}

// fill puts up to n tasks, k per machine, onto count machines with free
// capacity each, appends the resulting classes to out (filled machines first,
// as first fit would) and returns how many tasks it placed.
func fill(out []binClass, free Resources, count int, k, n int64, req Resources) ([]binClass, int64) {
	full := min(int64(count), n/k)
	placed := full * k
	if full > 0 {
		out = append(out, binClass{free.Sub(req.Mul(k)), int(full)})
	}
	rest := int64(count) - full
	if r := n - placed; rest > 0 && r > 0 { // r < k: one machine takes the remainder
		placed += r
		out = append(out, binClass{free.Sub(req.Mul(r)), 1})
		rest--
	}
	if rest > 0 {
		out = append(out, binClass{free, int(rest)})
	}
	return out, placed
}

// mergeClasses joins adjacent classes with equal free capacity.
func mergeClasses(cs []binClass) []binClass {
	out := cs[:0]
	for _, c := range cs {
		if len(out) > 0 && out[len(out)-1].free == c.free {
			out[len(out)-1].n += c.n
			continue
		}
		out = append(out, c)
	}
	return out
}
