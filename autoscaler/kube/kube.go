// Package kube is the autoscaler's demand source for Kubernetes. It owns three
// things: the mapping from the API server's pods and nodes to the
// autoscaler's Task and Node (Snapshot), waking the loop when that picture
// changes (Watch), and emptying a node before its machine is deleted (Drain:
// cordon, then evict through the Eviction API so PodDisruptionBudgets hold).
// Decisions stay in package autoscaler; machines are created and deleted by
// the engine, never here.
//
// # Mapping
//
// A pod is pending work when its PodScheduled condition is False with reason
// Unschedulable, it is not bound to a node, not terminating, not finished,
// and the scheduler has not nominated a node for it (a nominated pod is
// making room by preemption; counting it as well would count the same demand
// twice, once for it and once for the pods it preempts).
//
// A pod's Requests are what the scheduler reserves for it: the sum of its
// containers' requests, raised to the largest init container's (with
// restartable "sidecar" init containers added to both, as they keep
// running), replaced by pod-level requests where those are set, plus the
// RuntimeClass overhead. Only CPU and memory are modelled; extended
// resources (GPUs), ephemeral storage, host ports and volumes are not.
//
// NodeSelector is spec.nodeSelector plus, when required node affinity has
// exactly one term, each of that term's expressions that is `In` with a
// single value. Everything else about placement is ignored and so treated as
// satisfiable: several affinity terms (an OR the model cannot express),
// NotIn/Exists/DoesNotExist/Gt/Lt, multi-valued In, matchFields, preferred
// affinity, inter-pod (anti-)affinity and topology spread. A pod with such
// constraints may therefore make the autoscaler add a machine it cannot use;
// the scheduler remains the judge.
//
// Tolerations keep Key and Value; operator Exists maps to an empty Value
// (any value). A toleration's effect is ignored, except that PreferNoSchedule
// ones are dropped, since only NoSchedule and NoExecute taints are kept on
// nodes. A toleration with an empty key (tolerate every taint) cannot be
// expressed and tolerates nothing here, so such a pod is only placed on
// untainted pools: conservative, never a useless machine.
//
// Nodes are those Ready and not cordoned. A node is a Manager (never
// removed) when it has the node-role.kubernetes.io/control-plane or the
// legacy node-role.kubernetes.io/master label. Allocated sums the requests of
// every unfinished pod bound to it, as the scheduler does; Tasks lists only
// the pods that would need a new place if the node went away: DaemonSet
// pods and static (mirror) pods belong to the node and die with it, and
// terminating pods are leaving anyway.
package kube

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/provisionhq/provision/autoscaler"
)

// Options tune a Source. The zero value is usable.
type Options struct {
	Logger *slog.Logger
	// Backoff is the first wait before asking the API server again: after
	// an eviction was refused, between checks that an evicted pod is gone,
	// and before reconnecting a watch that failed. It doubles on each retry
	// up to ten times itself. Default 1s, as an eviction blocked by a
	// PodDisruptionBudget clears only when a replacement pod is Ready,
	// which takes seconds; tests shrink it.
	Backoff time.Duration
}

// Source reads demand from a Kubernetes API server. It is safe for
// concurrent use.
type Source struct {
	client  kubernetes.Interface
	log     *slog.Logger
	backoff time.Duration
}

// New returns a Source reading through client.
func New(client kubernetes.Interface, opts Options) *Source {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := opts.Backoff
	if backoff <= 0 {
		backoff = time.Second
	}
	return &Source{client: client, log: log, backoff: backoff}
}

// Config returns the client configuration for the cluster: the kubeconfig at
// the given path when one is given; otherwise the pod's service account when
// running inside the cluster (the autoscaler's Deployment), and the usual
// kubeconfig search ($KUBECONFIG, ~/.kube/config) when not.
func Config(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err == nil {
			return cfg, nil
		}
		if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("in-cluster kubernetes config: %w", err)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		if kubeconfig == "" {
			return nil, fmt.Errorf("kubernetes config: not running in a cluster and no usable kubeconfig: %w", err)
		}
		return nil, fmt.Errorf("kubernetes config from %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// Interface guard.
var _ autoscaler.Source = (*Source)(nil)
