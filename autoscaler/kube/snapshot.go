package kube

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/provisionhq/provision/autoscaler"
)

const (
	// pageSize bounds one list response: a cluster's pods can run to tens of
	// thousands, and one unpaged list of them is a large allocation on the
	// API server and here at once.
	pageSize = 500
	// unfinished asks the API server for pods that still hold resources, so
	// finished Jobs' pods are not shipped at all. (Filters applied here
	// too: not every server, nor the fake client, honours it.)
	unfinished = "status.phase!=" + string(corev1.PodSucceeded) + ",status.phase!=" + string(corev1.PodFailed)
)

// Labels that mark a control-plane node; "master" is the name before 1.20.
const (
	labelControlPlane = "node-role.kubernetes.io/control-plane"
	labelMaster       = "node-role.kubernetes.io/master"
)

// Snapshot reads unschedulable pods and the nodes that can take work now.
func (s *Source) Snapshot(ctx context.Context) (autoscaler.Snapshot, error) {
	nodes, _, err := s.listNodes(ctx)
	if err != nil {
		return autoscaler.Snapshot{}, err
	}
	pods, _, err := s.listPods(ctx, metav1.ListOptions{FieldSelector: unfinished})
	if err != nil {
		return autoscaler.Snapshot{}, err
	}
	return snapshot(nodes, pods), nil
}

// snapshot maps the API objects to the autoscaler's model (see the package
// comment for the rules).
func snapshot(nodes []corev1.Node, pods []corev1.Pod) autoscaler.Snapshot {
	var snap autoscaler.Snapshot
	byName := map[string]*autoscaler.Node{}
	for i := range nodes {
		n := &nodes[i]
		if !usable(n) {
			continue
		}
		byName[n.Name] = &autoscaler.Node{
			Name:        n.Name,
			Allocatable: resources(n.Status.Allocatable),
			Labels:      maps.Clone(n.Labels),
			Taints:      taints(n.Spec.Taints),
			Manager:     manager(n),
		}
	}
	for i := range pods {
		p := &pods[i]
		if finished(p) {
			continue
		}
		if unschedulable(p) {
			snap.Pending = append(snap.Pending, task(p))
			continue
		}
		n := byName[p.Spec.NodeName]
		if n == nil {
			continue // not bound yet, or bound to a node that takes no work
		}
		t := task(p)
		n.Allocated = n.Allocated.Add(t.Requests)
		if movable(p) {
			n.Tasks = append(n.Tasks, t)
		}
	}
	for _, n := range byName {
		slices.SortFunc(n.Tasks, func(a, b autoscaler.Task) int { return cmp.Compare(a.ID, b.ID) })
		snap.Nodes = append(snap.Nodes, *n)
	}
	// Sorted so that two snapshots of the same cluster are equal and the
	// loop's decisions (and logs) are reproducible.
	slices.SortFunc(snap.Nodes, func(a, b autoscaler.Node) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(snap.Pending, func(a, b autoscaler.Task) int { return cmp.Compare(a.ID, b.ID) })
	return snap
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// unschedulable reports whether p is work the scheduler could not place.
func unschedulable(p *corev1.Pod) bool {
	if p.Spec.NodeName != "" || p.DeletionTimestamp != nil || finished(p) || p.Status.NominatedNodeName != "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable
		}
	}
	return false
}

// movable reports whether p would need a place on another node if its node
// went away.
func movable(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && !daemon(p) && !mirror(p)
}

func daemon(p *corev1.Pod) bool {
	c := metav1.GetControllerOf(p)
	return c != nil && c.Kind == "DaemonSet"
}

// mirror reports whether p is the API's copy of a static pod, which the
// kubelet runs from a file on the node: deleting it changes nothing.
func mirror(p *corev1.Pod) bool {
	_, ok := p.Annotations[corev1.MirrorPodAnnotationKey]
	return ok
}

// usable reports whether the scheduler may place new pods on n.
func usable(n *corev1.Node) bool {
	if n.Spec.Unschedulable {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func manager(n *corev1.Node) bool {
	_, cp := n.Labels[labelControlPlane]
	_, m := n.Labels[labelMaster]
	return cp || m
}

func task(p *corev1.Pod) autoscaler.Task {
	return autoscaler.Task{
		ID:           podKey(p),
		Requests:     podRequests(&p.Spec),
		NodeSelector: nodeSelector(&p.Spec),
		Tolerations:  tolerations(p.Spec.Tolerations),
	}
}

func resources(l corev1.ResourceList) autoscaler.Resources {
	return autoscaler.Resources{MilliCPU: l.Cpu().MilliValue(), MemoryBytes: l.Memory().Value()}
}

func maxResources(a, b autoscaler.Resources) autoscaler.Resources {
	return autoscaler.Resources{MilliCPU: max(a.MilliCPU, b.MilliCPU), MemoryBytes: max(a.MemoryBytes, b.MemoryBytes)}
}

// podRequests is what the scheduler reserves for a pod, following
// k8s.io/component-helpers' PodRequests: init containers run one after
// another before the app containers, so the pod needs the larger of their
// peak and the app containers' sum; a restartable init container (a sidecar)
// keeps running, so it adds to the app containers and to every init
// container started after it.
func podRequests(spec *corev1.PodSpec) autoscaler.Resources {
	var apps autoscaler.Resources
	for _, c := range spec.Containers {
		apps = apps.Add(resources(c.Resources.Requests))
	}
	var sidecars, initPeak autoscaler.Resources
	for _, c := range spec.InitContainers {
		r := resources(c.Resources.Requests)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			apps = apps.Add(r)
			sidecars = sidecars.Add(r)
			initPeak = maxResources(initPeak, sidecars)
			continue
		}
		initPeak = maxResources(initPeak, r.Add(sidecars))
	}
	req := maxResources(apps, initPeak)
	// Pod-level requests, where set, are the pod's budget for that resource
	// whatever its containers ask.
	if spec.Resources != nil {
		if q, ok := spec.Resources.Requests[corev1.ResourceCPU]; ok {
			req.MilliCPU = q.MilliValue()
		}
		if q, ok := spec.Resources.Requests[corev1.ResourceMemory]; ok {
			req.MemoryBytes = q.Value()
		}
	}
	return req.Add(resources(spec.Overhead))
}

// nodeSelector reduces the pod's required node placement to key=value
// labels, as far as it reduces (see the package comment).
func nodeSelector(spec *corev1.PodSpec) map[string]string {
	sel := maps.Clone(spec.NodeSelector)
	if a := spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		// Terms are ORed: with more than one, no single label set is
		// required, so none is assumed.
		if terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms; len(terms) == 1 {
			for _, e := range terms[0].MatchExpressions {
				if e.Operator != corev1.NodeSelectorOpIn || len(e.Values) != 1 {
					continue
				}
				if sel == nil {
					sel = map[string]string{}
				}
				if _, set := sel[e.Key]; !set {
					sel[e.Key] = e.Values[0]
				}
			}
		}
	}
	if len(sel) == 0 {
		return nil
	}
	return sel
}

func tolerations(ts []corev1.Toleration) []autoscaler.Toleration {
	var out []autoscaler.Toleration
	for _, t := range ts {
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue // tolerates only taints Snapshot does not keep
		}
		v := t.Value
		if t.Operator == corev1.TolerationOpExists {
			v = ""
		}
		out = append(out, autoscaler.Toleration{Key: t.Key, Value: v})
	}
	return out
}

// taints keeps the taints that keep pods off a node; PreferNoSchedule is a
// preference the scheduler may ignore when room is short.
func taints(ts []corev1.Taint) []autoscaler.Taint {
	var out []autoscaler.Taint
	for _, t := range ts {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, autoscaler.Taint{Key: t.Key, Value: t.Value})
		}
	}
	return out
}

// listPods lists pods in every namespace page by page and returns them with
// the list's resource version, from which a watch can continue.
func (s *Source) listPods(ctx context.Context, opts metav1.ListOptions) ([]corev1.Pod, string, error) {
	return listAll(ctx, "pods", opts, func(ctx context.Context, o metav1.ListOptions) ([]corev1.Pod, metav1.ListMeta, error) {
		l, err := s.client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
		if err != nil {
			return nil, metav1.ListMeta{}, err
		}
		return l.Items, l.ListMeta, nil
	})
}

func (s *Source) listNodes(ctx context.Context) ([]corev1.Node, string, error) {
	return listAll(ctx, "nodes", metav1.ListOptions{}, func(ctx context.Context, o metav1.ListOptions) ([]corev1.Node, metav1.ListMeta, error) {
		l, err := s.client.CoreV1().Nodes().List(ctx, o)
		if err != nil {
			return nil, metav1.ListMeta{}, err
		}
		return l.Items, l.ListMeta, nil
	})
}

func listAll[T any](ctx context.Context, what string, opts metav1.ListOptions, page func(context.Context, metav1.ListOptions) ([]T, metav1.ListMeta, error)) ([]T, string, error) {
	var all []T
	opts.Limit = pageSize
	for {
		items, meta, err := page(ctx, opts)
		if err != nil {
			return nil, "", fmt.Errorf("list %s: %w", what, err)
		}
		all = append(all, items...)
		if meta.Continue == "" {
			return all, meta.ResourceVersion, nil
		}
		opts.Continue = meta.Continue
	}
}
