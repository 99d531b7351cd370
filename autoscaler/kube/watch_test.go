package kube_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/provisionhq/provision/autoscaler/kube"
)

const (
	// noticeWithin is the contract: the loop reacts in about a second.
	noticeWithin = time.Second
	// quietFor is how long a change that does not matter must stay silent.
	quietFor = 300 * time.Millisecond
)

// watching starts src.Watch on client and returns a channel of its calls
// to changed, after both the pods and the nodes watch are established (so
// a change made next is one the watch must see, not part of its first
// list). The Watch must return context.Canceled promptly when the test ends.
// watchHook, when set, may take over the n-th watch call of a resource.
func watching(t *testing.T, client *fake.Clientset, hook func(resource string, n int) (watch.Interface, error)) <-chan struct{} {
	t.Helper()
	var (
		mu      sync.Mutex
		calls   = map[string]int{}
		started = make(chan string, 16)
	)
	client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		res := a.GetResource().Resource
		mu.Lock()
		calls[res]++
		n := calls[res]
		mu.Unlock()
		if hook != nil {
			if w, err := hook(res, n); w != nil || err != nil {
				return true, w, err
			}
		}
		// The default reactor registers the watch right after this; the
		// watch starts at the resource version of the list before it, so
		// nothing made after this signal can be missed.
		started <- res
		return false, nil, nil
	})
	changed := make(chan struct{}, 1)
	src := kube.New(client, kube.Options{Backoff: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- src.Watch(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Watch returned %v, want context.Canceled", err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("Watch did not return after its context was canceled")
		}
	})
	seen := map[string]bool{}
	for !seen["pods"] || !seen["nodes"] {
		select {
		case res := <-started:
			seen[res] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("watches not started: %v", seen)
		}
	}
	return changed
}

func TestWatch(t *testing.T) {
	t.Parallel()
	const ns = "w"
	tests := []struct {
		name    string
		objects []runtime.Object
		change  func(ctx context.Context, c *fake.Clientset) error
		notice  bool
	}{
		{
			name: "new unschedulable pod",
			change: func(ctx context.Context, c *fake.Clientset) error {
				_, err := c.CoreV1().Pods(ns).Create(ctx, pod(ns, "new", unschedulable), metav1.CreateOptions{})
				return err
			},
			notice: true,
		},
		{
			name:    "pending pod turns unschedulable",
			objects: []runtime.Object{pod(ns, "p")},
			change: func(ctx context.Context, c *fake.Clientset) error {
				_, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, pod(ns, "p", unschedulable), metav1.UpdateOptions{})
				return err
			},
			notice: true,
		},
		{
			name:    "pod deleted",
			objects: []runtime.Object{node("n1"), pod(ns, "p", on("n1"))},
			change: func(ctx context.Context, c *fake.Clientset) error {
				return c.CoreV1().Pods(ns).Delete(ctx, "p", metav1.DeleteOptions{})
			},
			notice: true,
		},
		{
			name:    "pod finished",
			objects: []runtime.Object{node("n1"), pod(ns, "p", on("n1"))},
			change: func(ctx context.Context, c *fake.Clientset) error {
				_, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, pod(ns, "p", on("n1"), phase(corev1.PodSucceeded)), metav1.UpdateOptions{})
				return err
			},
			notice: true,
		},
		{
			name: "node added",
			change: func(ctx context.Context, c *fake.Clientset) error {
				_, err := c.CoreV1().Nodes().Create(ctx, node("n2"), metav1.CreateOptions{})
				return err
			},
			notice: true,
		},
		{
			name:    "node removed",
			objects: []runtime.Object{node("n1")},
			change: func(ctx context.Context, c *fake.Clientset) error {
				return c.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{})
			},
			notice: true,
		},
		{
			name:    "node not ready",
			objects: []runtime.Object{node("n1")},
			change: func(ctx context.Context, c *fake.Clientset) error {
				_, err := c.CoreV1().Nodes().UpdateStatus(ctx, node("n1", ready(corev1.ConditionFalse)), metav1.UpdateOptions{})
				return err
			},
			notice: true,
		},
		{
			name:    "node cordoned",
			objects: []runtime.Object{node("n1")},
			change: func(ctx context.Context, c *fake.Clientset) error {
				_, err := c.CoreV1().Nodes().Patch(ctx, "n1", types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{})
				return err
			},
			notice: true,
		},
		{
			name: "pod not yet looked at by the scheduler",
			change: func(ctx context.Context, c *fake.Clientset) error {
				_, err := c.CoreV1().Pods(ns).Create(ctx, pod(ns, "fresh"), metav1.CreateOptions{})
				return err
			},
			notice: false,
		},
		{
			name:    "running pod relabelled",
			objects: []runtime.Object{node("n1"), pod(ns, "p", on("n1"))},
			change: func(ctx context.Context, c *fake.Clientset) error {
				_, err := c.CoreV1().Pods(ns).Update(ctx, pod(ns, "p", on("n1"), labelled("v", "2")), metav1.UpdateOptions{})
				return err
			},
			notice: false,
		},
		{
			name:    "unschedulable pod updated again",
			objects: []runtime.Object{pod(ns, "p", unschedulable)},
			change: func(ctx context.Context, c *fake.Clientset) error {
				_, err := c.CoreV1().Pods(ns).Update(ctx, pod(ns, "p", unschedulable, labelled("v", "2")), metav1.UpdateOptions{})
				return err
			},
			notice: false,
		},
		{
			name:    "node heartbeat",
			objects: []runtime.Object{node("n1")},
			change: func(ctx context.Context, c *fake.Clientset) error {
				n := node("n1")
				n.Status.Conditions[0].LastHeartbeatTime = metav1.Now()
				_, err := c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
				return err
			},
			notice: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := fake.NewClientset(tt.objects...)
			changed := watching(t, client, nil)
			if err := tt.change(t.Context(), client); err != nil {
				t.Fatal(err)
			}
			wait := quietFor
			if tt.notice {
				wait = noticeWithin
			}
			select {
			case <-changed:
				if !tt.notice {
					t.Error("changed was called for a change that does not matter")
				}
			case <-time.After(wait):
				if tt.notice {
					t.Errorf("changed was not called within %v", noticeWithin)
				}
			}
		})
	}
}

// TestWatchReconnects breaks the pods watch in the ways an API server does
// and checks that Watch carries on by itself.
func TestWatchReconnects(t *testing.T) {
	t.Parallel()
	const ns = "r"
	tests := []struct {
		name  string
		first func() (watch.Interface, error) // replaces the first pods watch
	}{
		{"watch refused", func() (watch.Interface, error) {
			return nil, apierrors.NewServiceUnavailable("apiserver is restarting")
		}},
		{"watch closed by the server", func() (watch.Interface, error) {
			w := watch.NewFake()
			w.Stop()
			return w, nil
		}},
		{"watch expired (410 Gone)", func() (watch.Interface, error) {
			w := watch.NewFakeWithChanSize(1, false)
			w.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
			return w, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := fake.NewClientset()
			var broken atomic.Bool
			changed := watching(t, client, func(res string, n int) (watch.Interface, error) {
				if res == "pods" && n == 1 {
					broken.Store(true)
					return tt.first()
				}
				return nil, nil
			})
			if !broken.Load() {
				t.Fatal("the first pods watch was not replaced")
			}
			select {
			case <-changed:
				t.Fatal("changed was called for a reconnect with nothing new")
			default:
			}
			if _, err := client.CoreV1().Pods(ns).Create(t.Context(), pod(ns, "new", unschedulable), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-changed:
			case <-time.After(noticeWithin):
				t.Errorf("changed was not called within %v after reconnecting", noticeWithin)
			}
		})
	}
}

// TestWatchRelistNotices: a pod that became unschedulable while the watch
// was down is reported by the list that follows.
func TestWatchRelistNotices(t *testing.T) {
	t.Parallel()
	const ns = "l"
	client := fake.NewClientset()
	var created atomic.Bool
	changed := watching(t, client, func(res string, n int) (watch.Interface, error) {
		if res != "pods" || n != 1 {
			return nil, nil
		}
		// After the first list, before the next: the watch is down.
		if err := client.Tracker().Add(pod(ns, "while-down", unschedulable)); err != nil {
			return nil, err
		}
		created.Store(true)
		return nil, apierrors.NewServiceUnavailable("apiserver is restarting")
	})
	if !created.Load() {
		t.Fatal("the first pods watch was not refused")
	}
	select {
	case <-changed:
	case <-time.After(noticeWithin):
		t.Errorf("a pod that became unschedulable while the watch was down was not reported")
	}
}
