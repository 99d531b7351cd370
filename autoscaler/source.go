package autoscaler

import "context"

// Snapshot is the cluster as a demand source sees it at one moment.
type Snapshot struct {
	// Pending is the work the scheduler could not place for lack of room:
	// Swarm tasks pending with "no suitable node", Kubernetes pods whose
	// PodScheduled condition is Unschedulable.
	Pending []Task
	// Nodes are the cluster's nodes that can take work (ready, not drained
	// or cordoned), with their running tasks. Node.Pool is left empty: the
	// loop maps a node to its pool by name (a node's hostname is its machine
	// ID).
	Nodes []Node
}

// Source is where the loop reads demand: a Swarm manager's Engine API or a
// Kubernetes API server.
type Source interface {
	// Snapshot reads pending work and nodes now.
	Snapshot(ctx context.Context) (Snapshot, error)
	// Watch calls changed whenever demand may have changed (a task went
	// pending, a service or pod was removed, a node joined), so the loop
	// reacts in about a second instead of waiting for its next scan. It
	// blocks until ctx is done, reconnecting on its own, and returns
	// ctx.Err(). changed must not block.
	Watch(ctx context.Context, changed func()) error
	// Drain moves the work off node before it is removed: Swarm sets its
	// availability to drain and waits until its tasks left; Kubernetes
	// cordons it and evicts its pods, respecting PodDisruptionBudgets. It
	// returns when the node is empty or ctx is done.
	Drain(ctx context.Context, node string) error
}
