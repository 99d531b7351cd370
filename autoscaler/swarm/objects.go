package swarm

import (
	"maps"
	"strings"

	"github.com/moby/moby/api/types/swarm"

	"github.com/provisionhq/provision/autoscaler"
)

// How the source reads the Engine API's Swarm objects (the official types).

// pending reports a task Swarm wants running but could not place. Tasks the
// scheduler has not looked at yet are pending without Err and are left out:
// they are usually placed within a tick.
func pending(t *swarm.Task) bool {
	return t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStatePending &&
		strings.HasPrefix(t.Status.Err, "no suitable node")
}

// placed reports a task Swarm wants running that holds its reservation on
// its node: from assigned until it stops running, as Swarm's scheduler counts.
func placed(t *swarm.Task) bool {
	return t.DesiredState == swarm.TaskStateRunning && t.NodeID != "" && live(t)
}

// live reports a task whose container may still exist on its node, whatever
// Swarm wants of it: a task being shut down is live until it stopped.
func live(t *swarm.Task) bool {
	switch t.Status.State {
	case swarm.TaskStateAssigned, swarm.TaskStateAccepted, swarm.TaskStatePreparing,
		swarm.TaskStateReady, swarm.TaskStateStarting, swarm.TaskStateRunning:
		return true
	}
	return false
}

func toTask(t *swarm.Task) autoscaler.Task {
	var (
		res         swarm.Resources
		constraints []string
	)
	if r := t.Spec.Resources; r != nil && r.Reservations != nil {
		res = *r.Reservations
	}
	if p := t.Spec.Placement; p != nil {
		constraints = p.Constraints
	}
	return autoscaler.Task{
		ID:           t.ID,
		Requests:     requests(res),
		NodeSelector: constraintSelector(constraints),
	}
}

// requests rounds CPU up, so a sub-millicore reservation is not simulated
// as free.
func requests(r swarm.Resources) autoscaler.Resources {
	return autoscaler.Resources{MilliCPU: (r.NanoCPUs + 999_999) / 1_000_000, MemoryBytes: r.MemoryBytes}
}

// allocatable rounds CPU down: what a node offers is never overstated.
func allocatable(r swarm.Resources) autoscaler.Resources {
	return autoscaler.Resources{MilliCPU: r.NanoCPUs / 1_000_000, MemoryBytes: r.MemoryBytes}
}

// usable reports a node that can take work now.
func usable(n *swarm.Node) bool {
	return n.Status.State == swarm.NodeStateReady && n.Spec.Availability == swarm.NodeAvailabilityActive
}

// nodeLabels are the node's Swarm labels plus the attributes constraints
// can name (see the Label constants); the attributes win over a Swarm label
// of the same key.
func nodeLabels(n *swarm.Node) map[string]string {
	l := make(map[string]string, len(n.Spec.Labels)+len(n.Description.Engine.Labels)+5)
	maps.Copy(l, n.Spec.Labels)
	for k, v := range n.Description.Engine.Labels {
		l[EngineLabelPrefix+k] = v
	}
	l[LabelRole] = strings.ToLower(string(n.Spec.Role))
	l[LabelID] = n.ID
	l[LabelHostname] = n.Description.Hostname
	if n.Description.Platform.OS != "" {
		l[LabelOS] = n.Description.Platform.OS
	}
	if n.Description.Platform.Architecture != "" {
		l[LabelArch] = n.Description.Platform.Architecture
	}
	return l
}

// global reports a service that runs one task per node.
func global(s *swarm.Service) bool {
	return s.Spec.Mode.Global != nil || s.Spec.Mode.GlobalJob != nil
}
