package swarm

import (
	"encoding/json"
	"strings"

	"github.com/provisionhq/provision/autoscaler"
)

// The Engine API objects, cut down to the fields the source reads. Unknown
// fields are ignored, so newer engines decode the same.

// task is a Swarm task (GET /tasks).
type task struct {
	ID           string
	ServiceID    string
	NodeID       string // "" until scheduled, except for global services
	DesiredState string
	Status       struct {
		State   string // new … pending, assigned … running, complete, shutdown, failed…
		Message string
		Err     string // "no suitable node (insufficient resources on 2 nodes)"
	}
	Spec struct {
		Resources struct {
			Reservations resources
		}
		Placement struct {
			Constraints []string
		}
	}
}

// pending reports a task Swarm wants running but could not place. Tasks the
// scheduler has not looked at yet are pending without Err and are left out:
// they are usually placed within a tick.
func (t *task) pending() bool {
	return t.DesiredState == "running" && t.Status.State == "pending" &&
		strings.HasPrefix(t.Status.Err, "no suitable node")
}

// placed reports a task Swarm wants running that holds its reservation on
// its node: from assigned until it stops running, as Swarm's scheduler counts.
func (t *task) placed() bool {
	return t.DesiredState == "running" && t.NodeID != "" && t.live()
}

// live reports a task whose container may still exist on its node, whatever
// Swarm wants of it: a task being shut down is live until it stopped.
func (t *task) live() bool {
	switch t.Status.State {
	case "assigned", "accepted", "preparing", "ready", "starting", "running":
		return true
	}
	return false
}

func (t *task) autoscaler() autoscaler.Task {
	return autoscaler.Task{
		ID:           t.ID,
		Requests:     t.Spec.Resources.Reservations.requests(),
		NodeSelector: constraintSelector(t.Spec.Placement.Constraints),
	}
}

// resources is an Engine API Resources object (reservations, or a node's
// total).
type resources struct {
	NanoCPUs    int64
	MemoryBytes int64
}

// requests rounds CPU up, so a sub-millicore reservation is not simulated
// as free.
func (r resources) requests() autoscaler.Resources {
	return autoscaler.Resources{MilliCPU: (r.NanoCPUs + 999_999) / 1_000_000, MemoryBytes: r.MemoryBytes}
}

// allocatable rounds CPU down: what a node offers is never overstated.
func (r resources) allocatable() autoscaler.Resources {
	return autoscaler.Resources{MilliCPU: r.NanoCPUs / 1_000_000, MemoryBytes: r.MemoryBytes}
}

// node is a Swarm node (GET /nodes).
type node struct {
	ID      string
	Version struct {
		Index uint64
	}
	Spec        nodeSpec
	Description struct {
		Hostname string
		Platform struct {
			Architecture string
			OS           string
		}
		Resources resources
		Engine    struct {
			Labels map[string]string
		}
	}
	Status struct {
		State string // unknown, down, ready, disconnected
	}
}

// usable reports a node that can take work now.
func (n *node) usable() bool {
	return n.Status.State == "ready" && n.Spec.Availability == "active"
}

// labels are the node's Swarm labels plus the attributes constraints can
// name (see the Label constants); the attributes win over a Swarm label of
// the same key.
func (n *node) labels() map[string]string {
	l := make(map[string]string, len(n.Spec.Labels)+len(n.Description.Engine.Labels)+5)
	for k, v := range n.Spec.Labels {
		l[k] = v
	}
	for k, v := range n.Description.Engine.Labels {
		l[EngineLabelPrefix+k] = v
	}
	l[LabelRole] = strings.ToLower(n.Spec.Role)
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

// nodeSpec is a node's spec. raw keeps it whole: an update replaces the
// entire spec, so Drain sends back every field it was given, including
// those this package does not know.
type nodeSpec struct {
	Role         string // worker, manager
	Availability string // active, pause, drain
	Labels       map[string]string
	raw          json.RawMessage
}

func (s *nodeSpec) UnmarshalJSON(b []byte) error {
	type fields nodeSpec // without this method
	var f fields
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = nodeSpec(f)
	s.raw = append(json.RawMessage(nil), b...)
	return nil
}

// withAvailability returns the spec as received with Availability set to a.
func (s *nodeSpec) withAvailability(a string) ([]byte, error) {
	m := map[string]json.RawMessage{}
	if len(s.raw) > 0 {
		if err := json.Unmarshal(s.raw, &m); err != nil {
			return nil, err
		}
	}
	v, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	m["Availability"] = v
	return json.Marshal(m)
}

// service is a Swarm service (GET /services); only its mode matters here.
type service struct {
	ID   string
	Spec struct {
		Mode struct {
			Global    *struct{}
			GlobalJob *struct{}
		}
	}
}
