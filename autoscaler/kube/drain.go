package kube

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/provisionhq/provision/internal/retry"
)

const (
	// evictConcurrency bounds the evictions in flight for one node.
	// kubectl drain starts them all at once; a node runs up to 110 pods by
	// default, and 16 at a time still empties it in a few rounds while
	// leaving the client's rate limit (client-go's default is 5 requests a
	// second, bursts of 10) to the rest of the loop too.
	evictConcurrency = 16
	// uncordonTimeout bounds undoing a cordon after a failed drain, which
	// runs when the caller's context may already be done.
	uncordonTimeout = 10 * time.Second
)

// Drain cordons node, then evicts every pod on it through the Eviction API
// and waits until they are gone. DaemonSet pods and static (mirror) pods are
// left: they belong to the node, their controllers would recreate them
// there, and they go away with the machine. Finished pods are left too.
//
// An eviction that a PodDisruptionBudget refuses (429) is retried with
// backoff until it is allowed or ctx ends; the error then wraps ctx's error
// and a *BudgetError naming the pod and the budget. Evictions run
// concurrently (up to 16 at a time), so a budget allowing one disruption
// lets the node's pods go one by one as replacements become ready.
//
// Drain is idempotent: a node already cordoned stays so, a pod already
// terminating is only waited for, and a node that no longer exists is
// drained. When Drain fails it uncordons the node if it was the one to cordon
// it: a cordoned node drops out of Snapshot.Nodes, so the loop would never
// look at it again and its capacity would be stranded. It evicts pods that
// have no controller as well: whether a node is worth draining is the loop's
// call, made from the node's Tasks. On a node whose kubelet is gone, evicted
// pods stay Terminating until the node object is deleted, so Drain then runs
// until ctx ends: the caller's deadline bounds it.
func (s *Source) Drain(ctx context.Context, node string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("drain node %s: %w", node, err)
		}
	}()
	n, err := s.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // gone already: nothing is left on it
	}
	if err != nil {
		return fmt.Errorf("get node: %w", err)
	}
	if !n.Spec.Unschedulable {
		if err := s.setUnschedulable(ctx, node, true); err != nil {
			return fmt.Errorf("cordon: %w", err)
		}
		s.log.Info("cordoned node", "node", node)
		defer func() {
			if err != nil {
				err = s.uncordon(ctx, node, err)
			}
		}()
	}
	// Lists again after each round: a pod the scheduler bound just before
	// the cordon may show up only now.
	for {
		pods, err := s.podsToMove(ctx, node)
		if err != nil {
			return err
		}
		if len(pods) == 0 {
			return nil
		}
		if err := s.moveAll(ctx, pods); err != nil {
			return err
		}
	}
}

// podsToMove lists the pods on node that Drain must see gone.
func (s *Source) podsToMove(ctx context.Context, node string) ([]corev1.Pod, error) {
	pods, _, err := s.listPods(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range pods {
		if p.Spec.NodeName != node || finished(&p) || daemon(&p) || mirror(&p) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// moveAll evicts pods concurrently and waits until they are gone.
func (s *Source) moveAll(ctx context.Context, pods []corev1.Pod) error {
	sem := make(chan struct{}, evictConcurrency)
	errs := make([]error, len(pods)) // by pod, so the joined error's order is stable
	var wg sync.WaitGroup
	for i := range pods {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = fmt.Errorf("evict pod %s: %w", podKey(&pods[i]), ctx.Err())
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = s.move(ctx, &pods[i])
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Source) move(ctx context.Context, p *corev1.Pod) error {
	key := podKey(p)
	if p.DeletionTimestamp == nil {
		if err := s.evict(ctx, p); err != nil {
			return fmt.Errorf("evict pod %s: %w", key, err)
		}
		s.log.Info("evicted pod", "pod", key, "node", p.Spec.NodeName)
	}
	if err := s.waitGone(ctx, p); err != nil {
		return fmt.Errorf("wait for pod %s to terminate: %w", key, err)
	}
	return nil
}

func (s *Source) policy() retry.Policy {
	return retry.Policy{Initial: s.backoff, Max: 10 * s.backoff}
}

// evict asks the API server to evict p until it agrees or ctx ends.
func (s *Source) evict(ctx context.Context, p *corev1.Pod) error {
	key := podKey(p)
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
	if p.UID != "" {
		// Evict the pod that was listed, not one that took its name since.
		ev.DeleteOptions = &metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(p.UID))}
	}
	var budgets []string
	looked := false
	return retry.Do(ctx, s.policy(), func(ctx context.Context) (bool, error) {
		err := s.client.CoreV1().Pods(p.Namespace).EvictV1(ctx, ev)
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return true, nil
		case apierrors.IsConflict(err):
			// The UID precondition failed if the pod is gone; otherwise
			// the server hit a write conflict and asking again is right.
			if gone, gerr := s.gone(ctx, p); gone {
				return true, nil
			} else if gerr != nil {
				err = errors.Join(err, gerr)
			}
			return false, err
		case apierrors.IsTooManyRequests(err):
			reason, ok := budgetCause(err)
			if !ok {
				return false, &throttled{err: err, after: retryAfter(err)}
			}
			if !looked {
				looked = true
				budgets = s.budgetsFor(ctx, p)
			}
			s.log.Debug("eviction refused by a disruption budget; retrying", "pod", key, "reason", reason)
			return false, &BudgetError{Pod: key, Budgets: budgets, Reason: reason, retryAfter: retryAfter(err)}
		case retryable(err):
			return false, err
		default:
			return true, err
		}
	})
}

// waitGone waits until p no longer exists (or its name belongs to a new pod).
func (s *Source) waitGone(ctx context.Context, p *corev1.Pod) error {
	return retry.Do(ctx, s.policy(), func(ctx context.Context) (bool, error) {
		gone, err := s.gone(ctx, p)
		if err != nil && !retryable(err) {
			return true, err
		}
		// Still terminating is "not yet", not an error.
		return gone, err
	})
}

func (s *Source) gone(ctx context.Context, p *corev1.Pod) (bool, error) {
	cur, err := s.client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("get pod: %w", err)
	}
	return p.UID != "" && cur.UID != p.UID, nil
}

// budgetsFor names the PodDisruptionBudgets that select p, for the error a
// refused eviction ends with. It is best effort: without them the error still
// carries the server's reason, which names the budget too.
func (s *Source) budgetsFor(ctx context.Context, p *corev1.Pod) []string {
	l, err := s.client.PolicyV1().PodDisruptionBudgets(p.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		s.log.Debug("cannot list disruption budgets", "namespace", p.Namespace, "err", err)
		return nil
	}
	var names []string
	for _, b := range l.Items {
		// In policy/v1 a nil selector selects nothing and an empty one
		// every pod in the namespace, as LabelSelectorAsSelector maps them.
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err == nil && sel.Matches(labels.Set(p.Labels)) {
			names = append(names, b.Namespace+"/"+b.Name)
		}
	}
	return names
}

func (s *Source) setUnschedulable(ctx context.Context, node string, on bool) error {
	patch := fmt.Appendf(nil, `{"spec":{"unschedulable":%t}}`, on)
	_, err := s.client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// uncordon undoes Drain's cordon after it failed with cause, and returns
// cause (joined with the uncordon's own failure, if any).
func (s *Source) uncordon(ctx context.Context, node string, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), uncordonTimeout)
	defer cancel()
	if err := s.setUnschedulable(ctx, node, false); err != nil && !apierrors.IsNotFound(err) {
		return errors.Join(cause, fmt.Errorf("uncordon after the failed drain: %w", err))
	}
	s.log.Info("uncordoned node after a failed drain", "node", node)
	return cause
}

// budgetCause returns the reason the Eviction API gives when a
// PodDisruptionBudget refuses, and whether err is that refusal (a 429 from
// API priority and fairness carries no such cause).
func budgetCause(err error) (string, bool) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) || st.Status().Details == nil {
		return "", false
	}
	for _, c := range st.Status().Details.Causes {
		if c.Type == policyv1.DisruptionBudgetCause {
			return c.Message, true
		}
	}
	return "", false
}

func retryAfter(err error) time.Duration {
	if s, ok := apierrors.SuggestsClientDelay(err); ok {
		return time.Duration(s) * time.Second
	}
	return 0
}

// retryable reports whether asking again may succeed: the API server is
// overloaded, failing or unreachable, rather than refusing the request.
func retryable(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return true // transport error: the API server may be back soon
	}
	code := st.Status().Code
	return code == 429 || code >= 500
}
