package swarm

import (
	"context"
	"fmt"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/provisionhq/provision/internal/retry"
)

// Drain sets every Swarm node named hostname (the machine ID) to
// availability drain and waits until it is empty: no task Swarm still wants
// running there, and, on a node that is up, no container still stopping (a
// machine deleted during its tasks' stop grace period would cut their
// shutdown short). On a node that is down only the first counts, as nobody
// is left to report its containers stopped.
//
// The update sends the node's spec back whole, Availability aside (Swarm
// replaces the entire spec), at the version it was read at; when another
// writer got there first it reads and tries again. A node already drained is
// not updated; a hostname Swarm does not know is already empty: Drain is
// idempotent. It checks every PollInterval and waits as long as ctx allows:
// give ctx a deadline.
func (s *Source) Drain(ctx context.Context, hostname string) error {
	var (
		found     bool
		remaining = -1 // unknown until the first check
	)
	err := retry.Do(ctx, retry.Policy{Initial: s.poll, Max: s.poll}, func(ctx context.Context) (bool, error) {
		nodes, err := s.listNodes(ctx)
		if err != nil {
			return true, err
		}
		var mine []swarm.Node
		for _, n := range nodes {
			if n.Description.Hostname == hostname {
				mine = append(mine, n)
			}
		}
		if len(mine) == 0 {
			if !found {
				s.logger.Info("not a swarm node, nothing to drain", "node", hostname)
			}
			return true, nil
		}
		found = true
		for i := range mine {
			n := &mine[i]
			if n.Spec.Availability == swarm.NodeAvailabilityDrain {
				continue
			}
			if err := s.setDrain(ctx, n); err != nil {
				// A stale version is a race, not a failure: read again.
				return !s.raced(ctx, n), err
			}
			s.logger.Info("swarm node set to drain", "node", hostname, "id", n.ID)
		}
		left, err := s.tasksLeft(ctx, mine)
		if err != nil {
			return true, err
		}
		if left != remaining {
			s.logger.Debug("swarm node draining", "node", hostname, "tasks_left", left)
		}
		remaining = left
		return left == 0, nil
	})
	switch {
	case err == nil:
		if found {
			s.logger.Info("swarm node drained", "node", hostname)
		}
		return nil
	case ctx.Err() != nil && remaining > 0:
		return fmt.Errorf("drain swarm node %s: %d tasks still on it: %w", hostname, remaining, err)
	default:
		return fmt.Errorf("drain swarm node %s: %w", hostname, err)
	}
}

// setDrain updates n's spec with Availability drain, the rest as read.
func (s *Source) setDrain(ctx context.Context, n *swarm.Node) error {
	spec := n.Spec
	spec.Availability = swarm.NodeAvailabilityDrain
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := s.api.api.NodeUpdate(ctx, n.ID, client.NodeUpdateOptions{Version: n.Version, Spec: spec}); err != nil {
		return fmt.Errorf("set swarm node %s to drain: %w", n.ID, s.api.explain(err))
	}
	return nil
}

// raced reports an update refused because n changed since it was read.
// Swarm says so only in its message text ("update out of sequence"), so
// the node is read again instead: a moved version is a lost race.
func (s *Source) raced(ctx context.Context, n *swarm.Node) bool {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := s.api.api.NodeInspect(ctx, n.ID, client.NodeInspectOptions{})
	return err == nil && res.Node.Version.Index != n.Version.Index
}

// tasksLeft counts the tasks that keep the nodes from being empty.
func (s *Source) tasksLeft(ctx context.Context, nodes []swarm.Node) (int, error) {
	up := make(map[string]bool, len(nodes))
	f := client.Filters{}
	for _, n := range nodes {
		up[n.ID] = n.Status.State == swarm.NodeStateReady
		f.Add("node", n.ID)
	}
	// All desired states: a task told to shut down is still there until
	// its container stopped.
	tasks, err := s.listTasks(ctx, f)
	if err != nil {
		return 0, err
	}
	left := 0
	for i := range tasks {
		t := &tasks[i]
		if _, ours := up[t.NodeID]; !ours {
			continue // the filter did it; a fake or an old engine may not
		}
		if t.DesiredState == swarm.TaskStateRunning || (up[t.NodeID] && live(t)) {
			left++
		}
	}
	return left, nil
}
