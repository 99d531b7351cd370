package autoscaler

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Scale-down defaults, as in the issue: a node under half of its CPU and
// memory reserved for ten minutes may go.
const (
	DefaultUtilizationThreshold = 0.5
	DefaultUnneededTime         = 10 * time.Minute
)

// ScaleDown finds nodes that may be removed: under Threshold of reserved CPU
// and memory for UnneededTime, whose tasks fit on the remaining nodes, never
// a manager and never taking a pool below its min. It remembers since when
// each node has been under the threshold, so one ScaleDown lives across
// passes of the loop. Not safe for concurrent use: one loop owns it.
type ScaleDown struct {
	Threshold    float64          // 0: DefaultUtilizationThreshold
	UnneededTime time.Duration    // 0: DefaultUnneededTime
	Now          func() time.Time // nil: time.Now; injected by tests

	since map[string]time.Time
}

// Candidate is a node that may be drained and removed, and why.
type Candidate struct {
	Node   string
	Pool   string
	Reason string
}

func utilization(n *Node) (cpu, mem float64) {
	frac := func(a, b int64) float64 {
		if b <= 0 {
			return 1 // nothing allocatable: not ours to judge, keep it
		}
		return float64(a) / float64(b)
	}
	return frac(n.Allocated.MilliCPU, n.Allocatable.MilliCPU), frac(n.Allocated.MemoryBytes, n.Allocatable.MemoryBytes)
}

// Candidates returns the nodes that may be removed now, least utilized first.
// Each candidate's tasks are simulated onto the nodes that stay, taking the
// capacity earlier candidates' tasks used, so the whole list can go at once.
func (s *ScaleDown) Candidates(nodes []Node, pools []PoolShape) []Candidate {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := now()
	threshold := s.Threshold
	if threshold <= 0 {
		threshold = DefaultUtilizationThreshold
	}
	unneeded := cmpOr(s.UnneededTime, DefaultUnneededTime)

	size := make(map[string]int) // pool -> machines it can still lose
	for _, pl := range pools {
		size[pl.Name] = pl.Current - pl.Min
	}
	seen := make(map[string]time.Time, len(nodes))
	type under struct {
		i   int
		max float64
	}
	var ready []under
	for i := range nodes {
		n := &nodes[i]
		cpu, mem := utilization(n)
		if n.Manager || max(cpu, mem) >= threshold {
			continue
		}
		since, ok := s.since[n.Name]
		if !ok {
			since = t
		}
		seen[n.Name] = since // nodes no longer under the threshold are forgotten
		if _, owned := size[n.Pool]; owned && t.Sub(since) >= unneeded {
			ready = append(ready, under{i, max(cpu, mem)})
		}
	}
	s.since = seen
	slices.SortStableFunc(ready, func(a, b under) int {
		if c := cmp.Compare(a.max, b.max); c != 0 {
			return c
		}
		return cmp.Compare(nodes[a.i].Name, nodes[b.i].Name)
	})

	free := make([]Resources, len(nodes))
	for i := range nodes {
		free[i] = nodes[i].Free()
	}
	removed := make([]bool, len(nodes))
	// received marks nodes that took moved tasks: they are no longer as
	// empty as they look, so they stay this pass.
	received := make([]bool, len(nodes))
	var out []Candidate
	for _, u := range ready {
		n := &nodes[u.i]
		if size[n.Pool] <= 0 || received[u.i] {
			continue
		}
		removed[u.i] = true
		moved, dest, ok := fitElsewhere(n.Tasks, nodes, free, removed)
		if !ok {
			removed[u.i] = false
			continue
		}
		free = moved
		for _, d := range dest {
			received[d] = true
		}
		size[n.Pool]--
		cpu, mem := utilization(n)
		out = append(out, Candidate{Node: n.Name, Pool: n.Pool, Reason: fmt.Sprintf(
			"node %s (pool %s): %.0f%% CPU, %.0f%% memory reserved for %v; %d tasks fit elsewhere",
			n.Name, n.Pool, cpu*100, mem*100, t.Sub(s.since[n.Name]).Truncate(time.Second), len(n.Tasks))})
	}
	return out
}

// fitElsewhere simulates first fit decreasing of tasks onto the nodes not
// removed and returns their free capacity afterwards and the nodes that took
// tasks, or false if some task fits nowhere.
func fitElsewhere(tasks []Task, nodes []Node, free []Resources, removed []bool) ([]Resources, []int, bool) {
	if len(tasks) == 0 {
		return free, nil, true
	}
	var dest []int
	var ref Resources
	for i := range nodes {
		ref = Resources{max(ref.MilliCPU, nodes[i].Allocatable.MilliCPU), max(ref.MemoryBytes, nodes[i].Allocatable.MemoryBytes)}
	}
	order := slices.Clone(tasks)
	slices.SortStableFunc(order, func(a, b Task) int {
		return cmp.Compare(dominantShare(b.Requests, ref), dominantShare(a.Requests, ref))
	})
	free = slices.Clone(free)
	for ti := range order {
		t := &order[ti]
		placed := false
		for i := range nodes {
			if removed[i] || !t.Requests.FitsIn(free[i]) || !t.accepts(nodes[i].Labels, nodes[i].Taints) {
				continue
			}
			free[i] = free[i].Sub(t.Requests)
			dest = append(dest, i)
			placed = true
			break
		}
		if !placed {
			return nil, nil, false
		}
	}
	return free, dest, true
}
