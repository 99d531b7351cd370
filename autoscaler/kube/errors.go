package kube

import (
	"fmt"
	"strings"
	"time"
)

// BudgetError is an eviction a PodDisruptionBudget refused: evicting the pod
// now would take its workload below the budget. Drain keeps retrying until
// its context ends and then returns this (wrapped), so the loop can tell a
// node it should leave alone for now from a broken API.
type BudgetError struct {
	Pod     string   // namespace/name
	Budgets []string // namespace/name of the budgets selecting the pod, when they could be read
	Reason  string   // the API server's explanation, e.g. "The disruption budget web needs 2 healthy pods and has 2 currently"
	// retryAfter is the server's hint of when to ask again.
	retryAfter time.Duration
}

func (e *BudgetError) Error() string {
	budget := "a PodDisruptionBudget"
	if len(e.Budgets) > 0 {
		budget = "PodDisruptionBudget " + strings.Join(e.Budgets, ", ")
	}
	msg := fmt.Sprintf("pod %s may not be evicted now: %s allows no more disruptions", e.Pod, budget)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

// RetryAfterHint lets retry.Do honour the server's Retry-After.
func (e *BudgetError) RetryAfterHint() time.Duration { return e.retryAfter }

// throttled is an API error that carries the server's Retry-After hint (API
// priority and fairness answers 429 with one).
type throttled struct {
	err   error
	after time.Duration
}

func (e *throttled) Error() string                 { return e.err.Error() }
func (e *throttled) Unwrap() error                 { return e.err }
func (e *throttled) RetryAfterHint() time.Duration { return e.after }
