package ratelimit

import (
	"sync"
	"time"
)

// GCE's published rate quotas, from Google's "Compute Engine rate quotas"
// (https://cloud.google.com/compute/docs/api-rate-limits, also
// https://cloud.google.com/compute/api-quota): per project, per quota
// group, counted over synchronized one-minute intervals ("if a project
// reaches a quota limit at 10:00:15, the quota refills at the start of the
// next synchronized interval, such as 10:01:00"); a call over quota gets
// 403 with reason rateLimitExceeded. The default values the page gives:
//
//	Queries (compute.googleapis.com/default): global mutation
//	  methods, e.g. instances.bulkInsert, instances.delete    1,500 / minute
//	Read requests (compute.googleapis.com/read_requests):
//	  global *.get methods                                    1,500 / minute
//
// Google has since folded these into "simplified" and per-region metrics
// whose defaults the stored copy of the page does not list; operations
// (zoneOperations.get/wait) and list calls have groups of their own whose
// defaults it does not give either, so they are not modelled. cloudsim's
// GCE does not enforce these yet: GCE batches with bulkInsert, so at the
// benchmark's sizes a create is a handful of calls a minute.
var (
	GCEQueries      = Window{Limit: 1500, Per: time.Minute}
	GCEReadRequests = Window{Limit: 1500, Per: time.Minute}
)

// Window is a rate quota counted over fixed, synchronized intervals.
type Window struct {
	Limit int
	Per   time.Duration
}

// Windowed enforces Windows, one per quota group. Safe for concurrent use.
type Windowed struct {
	now    func() time.Time
	groups map[string]Window

	mu   sync.Mutex
	used map[string]int       // calls in the current interval, by group
	at   map[string]time.Time // start of that interval, by group
}

// NewWindowed returns a limiter for the given quota groups.
func NewWindowed(groups map[string]Window) *Windowed {
	return &Windowed{now: time.Now, groups: groups, used: map[string]int{}, at: map[string]time.Time{}}
}

// Allow reports whether one more call in group fits its quota now, and
// counts it if so. A group with no quota is always allowed.
func (w *Windowed) Allow(group string) bool {
	q, ok := w.groups[group]
	if !ok {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	start := w.now().Truncate(q.Per)
	if !w.at[group].Equal(start) {
		w.at[group], w.used[group] = start, 0
	}
	if w.used[group] >= q.Limit {
		return false
	}
	w.used[group]++
	return true
}
