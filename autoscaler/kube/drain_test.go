package kube_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/provisionhq/provision/autoscaler/kube"
)

var (
	podsGVR = corev1.SchemeGroupVersion.WithResource("pods")
	podsGVK = corev1.SchemeGroupVersion.WithKind("Pod")
	pdbsGVR = policyv1.SchemeGroupVersion.WithResource("poddisruptionbudgets")
	pdbsGVK = policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget")
)

// grace is how long an evicted pod takes to terminate in the fake cluster.
const grace = 100 * time.Millisecond

// cluster is a fake API server with the behaviour Drain depends on: the
// Eviction API enforcing PodDisruptionBudgets as kube-apiserver does, a
// kubelet that removes terminating pods after their grace period, and a
// ReplicaSet controller that replaces each removed pod on a spare node.
type cluster struct {
	client *fake.Clientset
	// replicas is each budget's expected pod count: what kube-apiserver
	// reads from the scale of the pods' controller for maxUnavailable and
	// percentages.
	replicas map[string]int32

	mu           sync.Mutex
	evicted      []string // pod names, in eviction order
	refused      int      // evictions refused by a budget
	maxDisrupted int      // most pods of one budget gone or going at an allowed eviction
}

func newCluster(t *testing.T, replicas map[string]int32, objects ...runtime.Object) *cluster {
	t.Helper()
	c := &cluster{client: fake.NewClientset(objects...), replicas: replicas}
	c.client.PrependReactor("create", "pods", c.evict)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { c.kubelet(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return c
}

// evict is the pods/eviction subresource, after kube-apiserver's
// pkg/registry/core/pod/storage/eviction.go. Reactors run under the fake's
// lock, so evictions are serialised as the API server's PDB update makes
// them, and this reads the tracker directly.
func (c *cluster) evict(a k8stesting.Action) (bool, runtime.Object, error) {
	if a.GetSubresource() != "eviction" {
		return false, nil, nil
	}
	ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
	ns := a.GetNamespace()
	obj, err := c.client.Tracker().Get(podsGVR, ns, ev.Name)
	if err != nil {
		return true, nil, err
	}
	p := obj.(*corev1.Pod).DeepCopy()
	if o := ev.DeleteOptions; o != nil && o.Preconditions != nil && o.Preconditions.UID != nil && *o.Preconditions.UID != p.UID {
		return true, nil, apierrors.NewConflict(podsGVR.GroupResource(), p.Name, fmt.Errorf("precondition failed: UID in precondition: %v, UID in object meta: %v", *o.Preconditions.UID, p.UID))
	}
	if p.DeletionTimestamp != nil {
		return true, nil, nil // already going
	}
	budgets, err := c.budgets(ns, p)
	if err != nil {
		return true, nil, err
	}
	if len(budgets) > 1 {
		return true, nil, apierrors.NewInternalError(errors.New("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."))
	}
	if len(budgets) == 1 {
		b := budgets[0]
		healthy, disrupted, desired, err := c.status(ns, b)
		if err != nil {
			return true, nil, err
		}
		if healthy-desired <= 0 {
			c.mu.Lock()
			c.refused++
			c.mu.Unlock()
			e := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
			e.ErrStatus.Details.Causes = append(e.ErrStatus.Details.Causes, metav1.StatusCause{
				Type:    policyv1.DisruptionBudgetCause,
				Message: fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", b.Name, desired, healthy),
			})
			return true, nil, e
		}
		c.mu.Lock()
		c.maxDisrupted = max(c.maxDisrupted, disrupted+1)
		c.mu.Unlock()
	}
	now := metav1.Now()
	p.DeletionTimestamp = &now
	if err := c.client.Tracker().Update(podsGVR, p, ns); err != nil {
		return true, nil, err
	}
	c.mu.Lock()
	c.evicted = append(c.evicted, p.Name)
	c.mu.Unlock()
	return true, nil, nil
}

func (c *cluster) budgets(ns string, p *corev1.Pod) ([]policyv1.PodDisruptionBudget, error) {
	obj, err := c.client.Tracker().List(pdbsGVR, pdbsGVK, ns)
	if err != nil {
		return nil, err
	}
	var out []policyv1.PodDisruptionBudget
	for _, b := range obj.(*policyv1.PodDisruptionBudgetList).Items {
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err != nil {
			return nil, err
		}
		if sel.Matches(labels.Set(p.Labels)) {
			out = append(out, b)
		}
	}
	return out, nil
}

// status is what the disruption controller would have written in the
// budget's status: healthy pods (ready, not terminating), the pods of the
// budget that are already terminating, and the healthy pods it requires.
func (c *cluster) status(ns string, b policyv1.PodDisruptionBudget) (healthy, disrupted, desired int, err error) {
	sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
	if err != nil {
		return 0, 0, 0, err
	}
	obj, err := c.client.Tracker().List(podsGVR, podsGVK, ns)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, p := range obj.(*corev1.PodList).Items {
		if !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		switch {
		case p.DeletionTimestamp != nil:
			disrupted++
		case podReady(&p):
			healthy++
		}
	}
	expected := int(c.replicas[b.Name])
	switch {
	case b.Spec.MinAvailable != nil:
		desired, err = intstr.GetScaledValueFromIntOrPercent(b.Spec.MinAvailable, expected, true)
	case b.Spec.MaxUnavailable != nil:
		var unavailable int
		unavailable, err = intstr.GetScaledValueFromIntOrPercent(b.Spec.MaxUnavailable, expected, true)
		desired = max(expected-unavailable, 0)
	}
	return healthy, disrupted, desired, err
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// kubelet removes pods whose grace period is over, and (as their
// ReplicaSet would) starts a ready replacement on the node "spare".
func (c *cluster) kubelet(ctx context.Context) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		obj, err := c.client.Tracker().List(podsGVR, podsGVK, metav1.NamespaceAll)
		if err != nil {
			continue
		}
		for _, p := range obj.(*corev1.PodList).Items {
			if p.DeletionTimestamp == nil || time.Since(p.DeletionTimestamp.Time) < grace {
				continue
			}
			if err := c.client.Tracker().Delete(podsGVR, p.Namespace, p.Name); err != nil {
				continue
			}
			if metav1.GetControllerOf(&p) != nil {
				_ = c.client.Tracker().Add(pod(p.Namespace, p.Name+"-new", on("spare"), func(n *corev1.Pod) {
					n.Labels = p.Labels
					n.OwnerReferences = p.OwnerReferences
				}))
			}
		}
	}
}

func (c *cluster) pod(t *testing.T, ns, name string) (*corev1.Pod, bool) {
	t.Helper()
	obj, err := c.client.Tracker().Get(podsGVR, ns, name)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*corev1.Pod), true
}

func (c *cluster) cordoned(t *testing.T, name string) bool {
	t.Helper()
	n, err := c.client.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Spec.Unschedulable
}

func budget(ns, name string, minAvailable, maxUnavailable *intstr.IntOrString, selector map[string]string) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable:   minAvailable,
			MaxUnavailable: maxUnavailable,
			Selector:       &metav1.LabelSelector{MatchLabels: selector},
		},
	}
}

func count(n int) *intstr.IntOrString { v := intstr.FromInt32(int32(n)); return &v }

func TestDrain(t *testing.T) {
	t.Parallel()
	const ns = "shop"
	web := func(name string, opts ...podOpt) *corev1.Pod {
		return pod(ns, name, append([]podOpt{on("n1"), labelled("app", "web"), ownedBy("ReplicaSet", "web-1"), container("100m", "64Mi")}, opts...)...)
	}
	webPods := []runtime.Object{web("web-0"), web("web-1"), web("web-2")}

	tests := []struct {
		name     string
		objects  []runtime.Object
		replicas map[string]int32
		timeout  time.Duration
		// want
		err          []string // substrings of the error; nil for success
		evicted      []string // sorted
		remain       []string // pods still on the node, untouched
		gone         []string // pods that must be gone besides the evicted
		cordoned     bool
		maxDisrupted int // most pods of one budget disrupted at once
		refused      bool
	}{
		{
			name:         "minAvailable allowing one disruption: pods leave one at a time",
			objects:      append([]runtime.Object{budget(ns, "web", count(2), nil, map[string]string{"app": "web"})}, webPods...),
			replicas:     map[string]int32{"web": 3},
			timeout:      10 * time.Second,
			evicted:      []string{"web-0", "web-1", "web-2"},
			cordoned:     true,
			maxDisrupted: 1,
			refused:      true,
		},
		{
			name:         "maxUnavailable allowing one disruption: pods leave one at a time",
			objects:      append([]runtime.Object{budget(ns, "web", nil, count(1), map[string]string{"app": "web"})}, webPods...),
			replicas:     map[string]int32{"web": 3},
			timeout:      10 * time.Second,
			evicted:      []string{"web-0", "web-1", "web-2"},
			cordoned:     true,
			maxDisrupted: 1,
			refused:      true,
		},
		{
			name:         "budget allowing two: pods leave two at a time",
			objects:      append([]runtime.Object{budget(ns, "web", nil, count(2), map[string]string{"app": "web"})}, webPods...),
			replicas:     map[string]int32{"web": 3},
			timeout:      10 * time.Second,
			evicted:      []string{"web-0", "web-1", "web-2"},
			cordoned:     true,
			maxDisrupted: 2,
			refused:      true,
		},
		{
			name: "budget allowing no disruption: fails at the deadline, the pod stays",
			objects: []runtime.Object{
				budget(ns, "db", count(1), nil, map[string]string{"app": "db"}),
				pod(ns, "db-0", on("n1"), labelled("app", "db"), ownedBy("StatefulSet", "db")),
			},
			replicas: map[string]int32{"db": 1},
			timeout:  500 * time.Millisecond,
			err: []string{
				"drain node n1", "evict pod shop/db-0", "context deadline exceeded",
				"PodDisruptionBudget shop/db allows no more disruptions",
				"The disruption budget db needs 1 healthy pods and has 1 currently",
			},
			remain:  []string{"db-0"},
			refused: true,
			// Drain cordoned the node, so it undoes that: a cordoned
			// node would drop out of the loop's view for good.
			cordoned: false,
		},
		{
			name: "node someone else cordoned stays cordoned when the drain fails",
			objects: []runtime.Object{
				budget(ns, "db", nil, count(0), map[string]string{"app": "db"}),
				pod(ns, "db-0", on("n1"), labelled("app", "db"), ownedBy("StatefulSet", "db")),
			},
			replicas: map[string]int32{"db": 1},
			timeout:  300 * time.Millisecond,
			err:      []string{"shop/db-0", "PodDisruptionBudget shop/db"},
			remain:   []string{"db-0"},
			refused:  true,
			cordoned: true,
		},
		{
			name: "DaemonSet, static and finished pods are not evicted",
			objects: []runtime.Object{
				pod(ns, "app", on("n1"), ownedBy("ReplicaSet", "app-1")),
				pod(ns, "bare", on("n1")),
				pod("kube-system", "agent", on("n1"), ownedBy("DaemonSet", "agent")),
				pod("kube-system", "etcd-n1", on("n1"), mirrorOf),
				pod(ns, "job-done", on("n1"), phase(corev1.PodSucceeded)),
				pod(ns, "other-node", on("n2")),
			},
			timeout:  10 * time.Second,
			evicted:  []string{"app", "bare"},
			remain:   []string{"agent", "etcd-n1", "job-done", "other-node"},
			cordoned: true,
		},
		{
			name:     "terminating pod is waited for, not evicted",
			objects:  []runtime.Object{pod(ns, "leaving", on("n1"), terminating)},
			timeout:  10 * time.Second,
			gone:     []string{"leaving"},
			cordoned: true,
		},
		{
			name:     "empty node",
			timeout:  10 * time.Second,
			cordoned: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n1 := node("n1")
			if strings.Contains(tt.name, "someone else cordoned") {
				n1.Spec.Unschedulable = true
			}
			objs := append([]runtime.Object{n1, node("n2"), node("spare")}, tt.objects...)
			c := newCluster(t, tt.replicas, objs...)
			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()

			err := kube.New(c.client, kube.Options{Backoff: 5 * time.Millisecond}).Drain(ctx, "n1")

			if tt.err == nil {
				if err != nil {
					t.Fatalf("Drain: %v", err)
				}
			} else {
				if err == nil {
					t.Fatal("Drain succeeded, want an error")
				}
				for _, s := range tt.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
				}
				var be *kube.BudgetError
				if !errors.As(err, &be) {
					t.Errorf("error %v does not wrap a *kube.BudgetError", err)
				} else if be.Pod != ns+"/db-0" || !slices.Equal(be.Budgets, []string{ns + "/db"}) {
					t.Errorf("BudgetError = %+v, want pod %s/db-0 and budget %s/db", be, ns, ns)
				}
			}
			c.mu.Lock()
			evicted := slices.Sorted(slices.Values(c.evicted))
			refused, maxDisrupted := c.refused, c.maxDisrupted
			c.mu.Unlock()
			if !slices.Equal(evicted, tt.evicted) {
				t.Errorf("evicted %v, want %v", evicted, tt.evicted)
			}
			if maxDisrupted != tt.maxDisrupted {
				t.Errorf("at most %d pods of a budget disrupted at once, want %d", maxDisrupted, tt.maxDisrupted)
			}
			if (refused > 0) != tt.refused {
				t.Errorf("%d evictions refused by a budget, want some: %v", refused, tt.refused)
			}
			for _, name := range slices.Concat(tt.evicted, tt.gone) {
				if _, ok := c.pod(t, ns, name); ok {
					t.Errorf("evicted pod %s still exists: Drain returned before it was gone", name)
				}
			}
			for _, name := range tt.remain {
				p, ok := c.pod(t, ns, name)
				if !ok {
					p, ok = c.pod(t, "kube-system", name)
				}
				if !ok {
					t.Errorf("pod %s was removed", name)
				} else if p.DeletionTimestamp != nil {
					t.Errorf("pod %s is terminating", name)
				}
			}
			if got := c.cordoned(t, "n1"); got != tt.cordoned {
				t.Errorf("node cordoned = %v, want %v", got, tt.cordoned)
			}
			if c.cordoned(t, "n2") {
				t.Error("another node was cordoned")
			}
		})
	}
}

// TestDrainIdempotent: draining a drained node, or one that is gone,
// succeeds and changes nothing.
func TestDrainIdempotent(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil, node("n1"), node("spare"), pod("a", "app", on("n1"), ownedBy("ReplicaSet", "app-1")))
	src := kube.New(c.client, kube.Options{Backoff: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 2 {
		if err := src.Drain(ctx, "n1"); err != nil {
			t.Fatalf("Drain #%d: %v", i+1, err)
		}
		if !c.cordoned(t, "n1") {
			t.Fatalf("after Drain #%d the node is not cordoned", i+1)
		}
	}
	c.mu.Lock()
	evicted := slices.Clone(c.evicted)
	c.mu.Unlock()
	if !slices.Equal(evicted, []string{"app"}) {
		t.Errorf("evicted %v, want [app] once", evicted)
	}
	if err := src.Drain(ctx, "gone"); err != nil {
		t.Errorf("Drain of a node that does not exist: %v", err)
	}
}

// TestDrainThrottled: a 429 from API priority and fairness (no budget cause)
// is retried, not reported as a budget.
func TestDrainThrottled(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil, node("n1"), node("spare"), pod("a", "app", on("n1"), ownedBy("ReplicaSet", "app-1")))
	throttled := 0
	c.client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" || throttled == 2 {
			return false, nil, nil
		}
		throttled++
		return true, nil, apierrors.NewTooManyRequests("Too many requests, please try again later.", 0)
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := kube.New(c.client, kube.Options{Backoff: 5 * time.Millisecond}).Drain(ctx, "n1"); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if throttled != 2 {
		t.Errorf("throttled %d times, want 2", throttled)
	}
	if _, ok := c.pod(t, "a", "app"); ok {
		t.Error("the pod is still there")
	}
}
