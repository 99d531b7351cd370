// Package kubernetes_test checks the example manifests of this folder: every
// document decodes strictly into its typed Kubernetes object, and the
// objects fit together (RBAC covers what the kube source calls, the
// Deployment runs the agreed command, the plan it mounts loads).
package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/provisionhq/provision/plans"
)

const (
	manifest  = "autoscaler.yaml"
	namespace = "provision-system"
)

// decode reads every document of path into typed objects. The deserializer
// is strict: an unknown or duplicated field (a typo, a wrong indent) fails
// the test instead of being dropped silently as kubectl apply would.
func decode(t *testing.T, path string) []runtime.Object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	codecs := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		if _, typed := obj.(*runtime.Unknown); typed {
			t.Fatalf("%s: document %d: %v is not a known type", path, i, gvk)
		}
		objs = append(objs, obj)
	}
	return objs
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, nil)
}

// one returns the only object of type T in objs.
func one[T runtime.Object](t *testing.T, objs []runtime.Object) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T, want 1", len(found), zero)
	}
	return found[0]
}

func TestAutoscalerManifest(t *testing.T) {
	t.Parallel()
	objs := decode(t, manifest)

	ns := one[*corev1.Namespace](t, objs)
	sa := one[*corev1.ServiceAccount](t, objs)
	role := one[*rbacv1.ClusterRole](t, objs)
	binding := one[*rbacv1.ClusterRoleBinding](t, objs)
	plan := one[*corev1.ConfigMap](t, objs)
	pdb := one[*policyv1.PodDisruptionBudget](t, objs)
	dep := one[*appsv1.Deployment](t, objs)

	t.Run("namespaced objects live in the namespace", func(t *testing.T) {
		if ns.Name != namespace {
			t.Errorf("namespace %q, want %q", ns.Name, namespace)
		}
		for _, o := range []metav1.Object{sa, plan, pdb, dep} {
			if o.GetNamespace() != namespace {
				t.Errorf("%s is in namespace %q, want %q", o.GetName(), o.GetNamespace(), namespace)
			}
		}
	})

	t.Run("the ClusterRole grants what autoscaler/kube calls", func(t *testing.T) {
		// Each API call of Snapshot, Watch and Drain.
		needs := []struct{ group, resource, verb string }{
			{"", "pods", "list"}, {"", "pods", "watch"}, {"", "pods", "get"},
			{"", "nodes", "list"}, {"", "nodes", "watch"}, {"", "nodes", "get"}, {"", "nodes", "patch"},
			{"", "pods/eviction", "create"},
			{"policy", "poddisruptionbudgets", "list"}, {"policy", "poddisruptionbudgets", "get"}, {"policy", "poddisruptionbudgets", "watch"},
		}
		for _, n := range needs {
			if !allows(role.Rules, n.group, n.resource, n.verb) {
				t.Errorf("ClusterRole does not allow %s %q/%s", n.verb, n.group, n.resource)
			}
		}
		// Least privilege: nothing that writes beyond the above.
		for _, n := range []struct{ group, resource, verb string }{
			{"", "pods", "delete"}, {"", "nodes", "delete"}, {"", "nodes", "update"}, {"", "secrets", "get"}, {"", "pods", "create"},
		} {
			if allows(role.Rules, n.group, n.resource, n.verb) {
				t.Errorf("ClusterRole allows %s %q/%s, which the autoscaler does not need", n.verb, n.group, n.resource)
			}
		}
	})

	t.Run("the binding gives the role to the Deployment's ServiceAccount", func(t *testing.T) {
		if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name {
			t.Errorf("roleRef %+v, want ClusterRole %s", binding.RoleRef, role.Name)
		}
		want := rbacv1.Subject{Kind: "ServiceAccount", Name: sa.Name, Namespace: namespace}
		if !slices.Contains(binding.Subjects, want) {
			t.Errorf("subjects %+v, want %+v", binding.Subjects, want)
		}
		if dep.Spec.Template.Spec.ServiceAccountName != sa.Name {
			t.Errorf("Deployment runs as %q, want %q", dep.Spec.Template.Spec.ServiceAccountName, sa.Name)
		}
	})

	t.Run("the Deployment runs two replicas of the agreed command", func(t *testing.T) {
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
			t.Errorf("replicas %v, want 2", dep.Spec.Replicas)
		}
		sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
			t.Errorf("selector %v does not select the template's labels %v (%v)", dep.Spec.Selector, dep.Spec.Template.Labels, err)
		}
		pod := dep.Spec.Template
		if pod.Annotations["prometheus.io/scrape"] != "true" {
			t.Errorf("annotations %v, want prometheus.io/scrape: \"true\"", pod.Annotations)
		}
		if len(pod.Spec.Containers) != 1 {
			t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
		}
		c := pod.Spec.Containers[0]
		cmd := strings.Join(slices.Concat(c.Command, c.Args), " ")
		if want := "provision autoscale --plan=/etc/provision/plan.yaml --source=kubernetes --ssh-key=/etc/provision-ssh/id_ed25519 --kubernetes-artifacts=/var/lib/provision/kubernetes"; cmd != want {
			t.Errorf("command %q, want %q", cmd, want)
		}
		p := c.LivenessProbe
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != intstr.FromInt32(9090) {
			t.Errorf("liveness probe %+v, want GET /healthz on 9090", p)
		}
		// The plan file the command reads is the ConfigMap's plan.yaml.
		var mounted bool
		for _, m := range c.VolumeMounts {
			if m.MountPath != "/etc/provision" {
				continue
			}
			for _, v := range pod.Spec.Volumes {
				if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == plan.Name &&
					slices.Contains(v.ConfigMap.Items, corev1.KeyToPath{Key: "plan.yaml", Path: "plan.yaml"}) {
					mounted = true
				}
			}
		}
		if !mounted {
			t.Error("/etc/provision/plan.yaml is not the ConfigMap's plan.yaml")
		}
	})

	t.Run("the PodDisruptionBudget covers the Deployment's pods", func(t *testing.T) {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
			t.Errorf("budget selector %v does not select the Deployment's pods (%v)", pdb.Spec.Selector, err)
		}
		if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() >= int(*dep.Spec.Replicas) {
			t.Errorf("minAvailable %v would block every drain of a node running a replica", pdb.Spec.MinAvailable)
		}
	})

	t.Run("the plan loads", func(t *testing.T) {
		text, ok := plan.Data["plan.yaml"]
		if !ok {
			t.Fatal("ConfigMap has no plan.yaml")
		}
		// In the cluster the plan's image archives are read from the
		// node's copy (--kubernetes-artifacts): stand one in.
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "provision-autoscaler.tar"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := plans.Parse("plan.yaml", []byte(text), plans.Options{ImageDir: dir}); err != nil {
			t.Errorf("plan: %v", err)
		}
	})
}

// allows reports whether rules grant verb on group/resource.
func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	has := func(list []string, v string) bool {
		return slices.Contains(list, v) || slices.Contains(list, "*")
	}
	for _, r := range rules {
		if has(r.APIGroups, group) && has(r.Resources, resource) && has(r.Verbs, verb) {
			return true
		}
	}
	return false
}
