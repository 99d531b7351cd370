// Package autoscaler owns the autoscaler's decisions: from pending work, the
// cluster's nodes and the plan's pools it computes how many machines each pool
// should add (a first-fit-decreasing simulation, an expander, per-pool backoff)
// and which nodes may be removed. This core does no I/O and reads no clock but
// the one injected; demand sources and the loop that acts on a decision build
// on it.
package autoscaler

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Resources is an amount of CPU and memory, as requested by a task or offered
// by a machine.
type Resources struct {
	MilliCPU    int64
	MemoryBytes int64
}

// Add returns r+o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.MilliCPU + o.MilliCPU, r.MemoryBytes + o.MemoryBytes}
}

// Sub returns r-o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.MilliCPU - o.MilliCPU, r.MemoryBytes - o.MemoryBytes}
}

// Mul returns r*n.
func (r Resources) Mul(n int64) Resources {
	return Resources{r.MilliCPU * n, r.MemoryBytes * n}
}

// FitsIn reports whether r fits in free on both dimensions.
func (r Resources) FitsIn(free Resources) bool {
	return r.MilliCPU <= free.MilliCPU && r.MemoryBytes <= free.MemoryBytes
}

func (r Resources) String() string {
	return fmt.Sprintf("%dm CPU, %.1fGiB", r.MilliCPU, float64(r.MemoryBytes)/(1<<30))
}

// fitCount is how many tasks requesting req fit in free. Zero requests fit
// without limit, so the caller always caps it by the tasks it has.
func fitCount(free, req Resources) int64 {
	n := int64(1) << 62
	if req.MilliCPU > 0 {
		n = min(n, free.MilliCPU/req.MilliCPU)
	} else if free.MilliCPU < 0 {
		return 0
	}
	if req.MemoryBytes > 0 {
		n = min(n, free.MemoryBytes/req.MemoryBytes)
	} else if free.MemoryBytes < 0 {
		return 0
	}
	return max(n, 0)
}

// Taint keeps tasks off a node unless they tolerate it (Kubernetes taints;
// Swarm has none).
type Taint struct {
	Key, Value string
}

// Toleration lets a task run on a node with a matching taint. An empty Value
// tolerates any value of Key.
type Toleration struct {
	Key, Value string
}

// Task is one unit of pending or running work: a Swarm task or a Kubernetes pod.
type Task struct {
	ID       string
	Requests Resources
	// NodeSelector is the node labels the task requires, key=value. Swarm
	// `node.labels.x==y` constraints and Kubernetes nodeSelector both reduce
	// to it.
	NodeSelector map[string]string
	Tolerations  []Toleration
}

// accepts reports whether the task may run on a node with these labels and
// taints (resources aside).
func (t *Task) accepts(labels map[string]string, taints []Taint) bool {
	if len(t.NodeSelector) == 0 && len(taints) == 0 {
		return true // most tasks, most nodes: skip starting two loops
	}
	for k, v := range t.NodeSelector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, tn := range taints {
		if !slices.ContainsFunc(t.Tolerations, func(tl Toleration) bool {
			return tl.Key == tn.Key && (tl.Value == "" || tl.Value == tn.Value)
		}) {
			return false
		}
	}
	return true
}

// selectorString is the task's selector as "a=1,b=2", sorted, for keys and
// messages.
func (t *Task) selectorString() string {
	keys := slices.Sorted(maps.Keys(t.NodeSelector))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + t.NodeSelector[k]
	}
	return strings.Join(parts, ",")
}

// Node is a machine already in the cluster.
type Node struct {
	Name string
	Pool string // the plan pool it belongs to; "" for nodes the plan does not own
	// Allocatable is what the orchestrator may schedule on it; Allocated is
	// the sum of the requests of the tasks running there.
	Allocatable Resources
	Allocated   Resources
	Labels      map[string]string
	Taints      []Taint
	Manager     bool   // a Swarm manager or Kubernetes control-plane node: never removed
	Tasks       []Task // running tasks, to simulate moving them on scale-down
}

// Free is the node's unreserved capacity.
func (n *Node) Free() Resources { return n.Allocatable.Sub(n.Allocated) }

// PoolShape is what the autoscaler knows of a plan pool: the machine it makes
// and how far it may grow.
type PoolShape struct {
	Name     string
	Provider string
	// Allocatable is what one new machine of the pool offers to tasks.
	Allocatable Resources
	// Labels and Taints are what a new node of the pool gets.
	Labels map[string]string
	Taints []Taint
	Min    int
	Max    int
	// Current counts the pool's machines that exist; InFlight those being
	// created, which count as capacity so a burst never over-provisions.
	Current  int
	InFlight int
	// PricePerHour of one machine; 0 when unknown (last under the price
	// expander).
	PricePerHour float64
	// Priority for the priority expander: higher wins.
	Priority int
}
