package kube_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/provisionhq/provision/autoscaler"
	"github.com/provisionhq/provision/autoscaler/kube"
)

func TestSnapshot(t *testing.T) {
	t.Parallel()
	affinity := func(terms ...corev1.NodeSelectorTerm) podOpt {
		return func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
			}}
		}
	}
	expr := func(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	tolerate := func(ts ...corev1.Toleration) podOpt {
		return func(p *corev1.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, ts...) }
	}
	res := func(milli, bytes int64) autoscaler.Resources {
		return autoscaler.Resources{MilliCPU: milli, MemoryBytes: bytes}
	}

	tests := []struct {
		name    string
		objects []runtime.Object
		want    autoscaler.Snapshot
	}{
		{
			name: "pending is unschedulable, unbound, alive and not nominated",
			objects: []runtime.Object{
				node("n1"),
				pod("default", "unschedulable", unschedulable, container("100m", "128Mi")),
				pod("default", "not-yet-scheduled", container("100m", "128Mi")),
				pod("default", "gated", scheduled(corev1.ConditionFalse, corev1.PodReasonSchedulingGated)),
				pod("default", "bound", on("n1"), container("200m", "256Mi")),
				pod("default", "leaving", unschedulable, terminating),
				pod("default", "failed", unschedulable, phase(corev1.PodFailed)),
				pod("default", "preempting", unschedulable, func(p *corev1.Pod) { p.Status.NominatedNodeName = "n1" }),
			},
			want: autoscaler.Snapshot{
				Pending: []autoscaler.Task{{ID: "default/unschedulable", Requests: res(100, 128*mi)}},
				Nodes: []autoscaler.Node{{
					Name: "n1", Allocatable: res(4000, 8*gi), Allocated: res(200, 256*mi),
					Tasks: []autoscaler.Task{{ID: "default/bound", Requests: res(200, 256*mi)}},
				}},
			},
		},
		{
			name: "requests: containers summed, raised to the init peak, sidecars kept",
			objects: []runtime.Object{
				// 100m+200m apps; a 500m init container runs alone first.
				pod("a", "init-peak", unschedulable, container("100m", "100Mi"), container("200m", "200Mi"), initContainer("500m", "50Mi", false)),
				// The sidecar (100m) runs beside the later init (400m) and
				// beside the app (200m): max(300m, 500m).
				pod("a", "sidecar", unschedulable, container("200m", "100Mi"), initContainer("100m", "10Mi", true), initContainer("400m", "400Mi", false)),
				// Pod-level requests replace the containers'; overhead adds.
				pod("a", "pod-level", unschedulable, container("100m", "64Mi"), func(p *corev1.Pod) {
					p.Spec.Resources = &corev1.ResourceRequirements{Requests: list("1", "")}
					p.Spec.Overhead = list("50m", "32Mi")
				}),
				pod("a", "best-effort", unschedulable, container("", "")),
			},
			want: autoscaler.Snapshot{Pending: []autoscaler.Task{
				{ID: "a/best-effort"},
				{ID: "a/init-peak", Requests: res(500, 300*mi)},
				{ID: "a/pod-level", Requests: res(1050, 96*mi)},
				{ID: "a/sidecar", Requests: res(500, 410*mi)},
			}},
		},
		{
			name: "node selector: nodeSelector plus single-valued In of a single affinity term",
			objects: []runtime.Object{
				pod("s", "one-term", unschedulable,
					func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} },
					affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
						expr("zone", corev1.NodeSelectorOpIn, "a"),
						expr("arch", corev1.NodeSelectorOpIn, "amd64", "arm64"), // either: not one label
						expr("gpu", corev1.NodeSelectorOpNotIn, "none"),
						expr("disk", corev1.NodeSelectorOpIn, "hdd"), // nodeSelector already says
					}})),
				pod("s", "two-terms", unschedulable, affinity(
					corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("zone", corev1.NodeSelectorOpIn, "a")}},
					corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{expr("zone", corev1.NodeSelectorOpIn, "b")}},
				)),
				pod("s", "match-fields", unschedulable, affinity(corev1.NodeSelectorTerm{
					MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpIn, "n1")},
				})),
			},
			want: autoscaler.Snapshot{Pending: []autoscaler.Task{
				{ID: "s/match-fields"},
				{ID: "s/one-term", NodeSelector: map[string]string{"disk": "ssd", "zone": "a"}},
				{ID: "s/two-terms"},
			}},
		},
		{
			name: "tolerations: Exists means any value, PreferNoSchedule dropped",
			objects: []runtime.Object{
				pod("t", "tolerant", unschedulable, tolerate(
					corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "gpu", Effect: corev1.TaintEffectNoSchedule},
					corev1.Toleration{Key: "spot", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
					corev1.Toleration{Key: "soft", Value: "x", Effect: corev1.TaintEffectPreferNoSchedule},
					corev1.Toleration{Key: "any-effect", Operator: corev1.TolerationOpExists},
				)),
			},
			want: autoscaler.Snapshot{Pending: []autoscaler.Task{{ID: "t/tolerant", Tolerations: []autoscaler.Toleration{
				{Key: "dedicated", Value: "gpu"}, {Key: "spot"}, {Key: "any-effect"},
			}}}},
		},
		{
			name: "nodes: ready and schedulable only; control plane is a manager; repelling taints",
			objects: []runtime.Object{
				node("w1", allocatable("3500m", "6Gi"), nodeLabels("pool", "a"),
					tainted("dedicated", "gpu", corev1.TaintEffectNoSchedule),
					tainted("soft", "x", corev1.TaintEffectPreferNoSchedule),
					tainted("evict", "y", corev1.TaintEffectNoExecute)),
				node("cordoned", cordoned),
				node("not-ready", ready(corev1.ConditionFalse)),
				node("unknown", ready(corev1.ConditionUnknown)),
				node("no-condition", func(n *corev1.Node) { n.Status.Conditions = nil }),
				node("cp", nodeLabels("node-role.kubernetes.io/control-plane", "")),
				node("old-master", nodeLabels("node-role.kubernetes.io/master", "")),
			},
			want: autoscaler.Snapshot{Nodes: []autoscaler.Node{
				{Name: "cp", Allocatable: res(4000, 8*gi), Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}, Manager: true},
				{Name: "old-master", Allocatable: res(4000, 8*gi), Labels: map[string]string{"node-role.kubernetes.io/master": ""}, Manager: true},
				{
					Name: "w1", Allocatable: res(3500, 6*gi), Labels: map[string]string{"pool": "a"},
					Taints: []autoscaler.Taint{{Key: "dedicated", Value: "gpu"}, {Key: "evict", Value: "y"}},
				},
			}},
		},
		{
			name: "allocated counts every unfinished pod on the node, tasks only those that must move",
			objects: []runtime.Object{
				node("n1"),
				node("c1", cordoned),
				pod("x", "app", on("n1"), ownedBy("ReplicaSet", "app-1"), container("100m", "100Mi")),
				pod("x", "agent", on("n1"), ownedBy("DaemonSet", "agent"), container("50m", "50Mi")),
				pod("x", "static", on("n1"), mirrorOf, container("200m", "")),
				pod("x", "going", on("n1"), terminating, container("10m", "10Mi")),
				pod("x", "done", on("n1"), phase(corev1.PodSucceeded), container("1", "1Gi")),
				pod("x", "elsewhere", on("c1"), container("1", "1Gi")),
			},
			want: autoscaler.Snapshot{Nodes: []autoscaler.Node{{
				Name: "n1", Allocatable: res(4000, 8*gi), Allocated: res(360, 160*mi),
				Tasks: []autoscaler.Task{{ID: "x/app", Requests: res(100, 100*mi)}},
			}}},
		},
		{
			name:    "empty cluster",
			objects: nil,
			want:    autoscaler.Snapshot{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := kube.New(fake.NewClientset(tt.objects...), kube.Options{})
			got, err := src.Snapshot(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Snapshot:\n got %s\nwant %s", show(got), show(tt.want))
			}
		})
	}
}

func show(s autoscaler.Snapshot) string {
	var b strings.Builder
	for _, t := range s.Pending {
		fmt.Fprintf(&b, "\n  pending %+v", t)
	}
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, "\n  node %+v", n)
	}
	return b.String()
}

// TestSnapshotPlacement runs snapshots through the autoscaler's planner, so
// that the mapping of taints, tolerations and selectors is checked by what
// the loop will do with it, not only by its shape.
func TestSnapshotPlacement(t *testing.T) {
	t.Parallel()
	const ns = "p"
	gpuPool := autoscaler.PoolShape{
		Name: "gpu", Provider: "aws", Max: 10,
		Allocatable: autoscaler.Resources{MilliCPU: 8000, MemoryBytes: 32 * gi},
		Labels:      map[string]string{"accel": "gpu"},
		Taints:      []autoscaler.Taint{{Key: "dedicated", Value: "gpu"}},
	}
	plainPool := autoscaler.PoolShape{
		Name: "plain", Provider: "aws", Max: 10,
		Allocatable: autoscaler.Resources{MilliCPU: 4000, MemoryBytes: 8 * gi},
	}
	tolerate := func(key string, op corev1.TolerationOperator, value string) podOpt {
		return func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: op, Value: value, Effect: corev1.TaintEffectNoSchedule})
		}
	}
	selector := func(k, v string) podOpt {
		return func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{k: v} }
	}
	gpuNode := node("gpu-1", allocatable("8", "32Gi"), nodeLabels("accel", "gpu"), tainted("dedicated", "gpu", corev1.TaintEffectNoSchedule))

	tests := []struct {
		name    string
		objects []runtime.Object
		pools   []autoscaler.PoolShape
		want    string // the pool scaled up, "" for none
		unsched bool   // the pod fits no pool at all
	}{
		{"no toleration: tainted pool refused", []runtime.Object{pod(ns, "w", unschedulable, container("1", "1Gi"))}, []autoscaler.PoolShape{gpuPool}, "", true},
		{"no toleration: untainted pool chosen", []runtime.Object{pod(ns, "w", unschedulable, container("1", "1Gi"))}, []autoscaler.PoolShape{gpuPool, plainPool}, "plain", false},
		{"toleration Equal matches", []runtime.Object{pod(ns, "w", unschedulable, container("1", "1Gi"), tolerate("dedicated", corev1.TolerationOpEqual, "gpu"))}, []autoscaler.PoolShape{gpuPool}, "gpu", false},
		{"toleration Exists matches any value", []runtime.Object{pod(ns, "w", unschedulable, container("1", "1Gi"), tolerate("dedicated", corev1.TolerationOpExists, ""))}, []autoscaler.PoolShape{gpuPool}, "gpu", false},
		{"toleration of another value refused", []runtime.Object{pod(ns, "w", unschedulable, container("1", "1Gi"), tolerate("dedicated", corev1.TolerationOpEqual, "fpga"))}, []autoscaler.PoolShape{gpuPool}, "", true},
		{"selector matching the pool's labels", []runtime.Object{pod(ns, "w", unschedulable, container("1", "1Gi"), selector("accel", "gpu"), tolerate("dedicated", corev1.TolerationOpExists, ""))}, []autoscaler.PoolShape{plainPool, gpuPool}, "gpu", false},
		{"selector no pool has", []runtime.Object{pod(ns, "w", unschedulable, container("1", "1Gi"), selector("accel", "tpu"))}, []autoscaler.PoolShape{plainPool, gpuPool}, "", true},
		{"tainted node with room does not take an intolerant pod", []runtime.Object{gpuNode, pod(ns, "w", unschedulable, container("1", "1Gi"))}, []autoscaler.PoolShape{plainPool}, "plain", false},
		{"tainted node with room takes a tolerant pod", []runtime.Object{gpuNode, pod(ns, "w", unschedulable, container("1", "1Gi"), tolerate("dedicated", corev1.TolerationOpEqual, "gpu"))}, []autoscaler.PoolShape{plainPool}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			snap, err := kube.New(fake.NewClientset(tt.objects...), kube.Options{}).Snapshot(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var p autoscaler.Planner
			d := p.Decide(autoscaler.Demand{Pending: snap.Pending, Nodes: snap.Nodes, Pools: tt.pools})
			got := ""
			for _, s := range d.ScaleUps {
				got += s.Pool
			}
			if got != tt.want {
				t.Errorf("scaled up %q, want %q (%s)", got, tt.want, d.Reason)
			}
			if (len(d.Unschedulable) > 0) != tt.unsched {
				t.Errorf("unschedulable = %v, want %v (%s)", d.Unschedulable, tt.unsched, d.Reason)
			}
		})
	}
}
