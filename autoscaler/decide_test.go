package autoscaler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers"
)

const gib = 1 << 30

func res(milli, gibs int64) Resources { return Resources{milli, gibs * gib} }

// tasks makes n identical tasks named prefix-0.. with the given selector.
func tasks(prefix string, n int, r Resources, sel map[string]string) []Task {
	out := make([]Task, n)
	for i := range out {
		out[i] = Task{ID: fmt.Sprintf("%s-%d", prefix, i), Requests: r, NodeSelector: sel}
	}
	return out
}

func pool(name string, r Resources, max int) PoolShape {
	return PoolShape{Name: name, Provider: "sim", Allocatable: r, Max: max}
}

func scaleUps(d Decision) map[string]int {
	m := map[string]int{}
	for _, s := range d.ScaleUps {
		m[s.Pool] += s.Nodes
	}
	return m
}

func TestDecide(t *testing.T) {
	t.Parallel()
	gpu := map[string]string{"gpu": "true"}
	withLabels := func(p PoolShape, l map[string]string) PoolShape { p.Labels = l; return p }
	inflight := func(p PoolShape, n int) PoolShape { p.InFlight = n; return p }
	current := func(p PoolShape, n int) PoolShape { p.Current = n; return p }
	cases := []struct {
		name          string
		pending       []Task
		nodes         []Node
		pools         []PoolShape
		maxNodes      int
		want          map[string]int
		unschedulable int
		waiting       int
		reason        []string // substrings
	}{
		{
			name:   "no pending tasks",
			pools:  []PoolShape{pool("a", res(4000, 16), 10)},
			want:   map[string]int{},
			reason: []string{"no pending tasks"},
		},
		{
			// FFD: three 3-CPU tasks and three 1-CPU tasks on 4-CPU machines
			// pair up, 3 machines; first fit in arrival order would need more.
			name:    "first fit decreasing pairs big and small",
			pending: append(tasks("s", 3, res(1000, 1), nil), tasks("b", 3, res(3000, 1), nil)...),
			pools:   []PoolShape{pool("a", res(4000, 16), 10)},
			want:    map[string]int{"a": 3},
			reason:  []string{"pool a: 3 nodes for 6 pending tasks (least-waste"},
		},
		{
			name:    "memory is a dimension too",
			pending: tasks("m", 5, res(100, 6), nil),
			pools:   []PoolShape{pool("a", res(4000, 16), 10)},
			want:    map[string]int{"a": 3},
		},
		{
			name:    "existing free capacity is used first",
			pending: tasks("t", 4, res(1000, 1), nil),
			nodes:   []Node{{Name: "n1", Pool: "a", Allocatable: res(4000, 16), Allocated: res(1000, 1)}},
			pools:   []PoolShape{current(pool("a", res(4000, 16), 10), 1)},
			want:    map[string]int{"a": 1},
			reason:  []string{"3 pending tasks fit existing nodes"},
		},
		{
			name:    "in-flight machines count as capacity",
			pending: tasks("t", 8, res(1000, 1), nil),
			pools:   []PoolShape{inflight(pool("a", res(4000, 16), 10), 2)},
			want:    map[string]int{},
			reason:  []string{"8 pending tasks fit existing nodes or machines being created"},
		},
		{
			name:    "in-flight covers part of a burst",
			pending: tasks("t", 10, res(1000, 1), nil),
			pools:   []PoolShape{inflight(pool("a", res(4000, 16), 10), 2)},
			want:    map[string]int{"a": 1},
		},
		{
			name:    "constraint picks the labelled pool",
			pending: append(tasks("g", 2, res(1000, 1), gpu), tasks("c", 2, res(1000, 1), nil)...),
			pools: []PoolShape{
				pool("cpu", res(4000, 16), 10),
				withLabels(pool("gpu", res(4000, 16), 10), gpu),
			},
			// least-waste: gpu can take all 4 tasks on one machine (0 waste
			// on CPU) so both groups land there.
			want: map[string]int{"gpu": 1},
		},
		{
			name:          "constraint on a node label no node has",
			pending:       tasks("g", 2, res(1000, 1), gpu),
			nodes:         []Node{{Name: "n1", Pool: "cpu", Allocatable: res(4000, 16)}},
			pools:         []PoolShape{current(pool("cpu", res(4000, 16), 10), 1)},
			want:          map[string]int{},
			unschedulable: 2,
			reason:        []string{"2 tasks unschedulable: no pool has labels gpu=true"},
		},
		{
			name:          "task larger than every machine",
			pending:       tasks("huge", 1, res(64000, 512), nil),
			pools:         []PoolShape{pool("a", res(4000, 16), 10), pool("b", res(8000, 32), 10)},
			want:          map[string]int{},
			unschedulable: 1,
			reason:        []string{"more than any matching pool's machine (largest 8000m CPU, 32.0GiB)"},
		},
		{
			name:    "pool max caps and the next pool takes the rest",
			pending: tasks("t", 20, res(1000, 1), nil),
			pools:   []PoolShape{current(pool("a", res(4000, 4), 3), 1), pool("b", res(4000, 16), 10)},
			want:    map[string]int{"a": 2, "b": 3},
			reason:  []string{"pool a: 2 nodes for 8 pending tasks", "pool b: 3 nodes for 12 pending tasks", "pool a at max 3"},
		},
		{
			name:     "cluster max caps all pools",
			pending:  tasks("t", 40, res(1000, 1), nil),
			pools:    []PoolShape{current(pool("a", res(4000, 16), 10), 1), pool("b", res(4000, 16), 10)},
			maxNodes: 4,
			want:     map[string]int{"a": 3},
			waiting:  28,
			reason:   []string{"cluster at max 4 nodes", "28 tasks wait"},
		},
		{
			name:    "pool at max leaves tasks waiting",
			pending: tasks("t", 5, res(1000, 1), nil),
			pools:   []PoolShape{current(pool("a", res(4000, 16), 1), 1)},
			want:    map[string]int{},
			waiting: 5,
			reason:  []string{"pool a at max 1"},
		},
		{
			name:    "taints keep intolerant tasks off",
			pending: []Task{{ID: "t", Requests: res(1000, 1)}, {ID: "u", Requests: res(1000, 1), Tolerations: []Toleration{{Key: "spot"}}}},
			pools: []PoolShape{
				{Name: "spot", Allocatable: res(4000, 16), Max: 10, Taints: []Taint{{"spot", "true"}}, PricePerHour: 0.01},
				{Name: "ondemand", Allocatable: res(8000, 32), Max: 10, PricePerHour: 1},
			},
			want: map[string]int{"ondemand": 1},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := Planner{MaxNodes: tc.maxNodes}
			d := p.Decide(Demand{Pending: tc.pending, Nodes: tc.nodes, Pools: tc.pools})
			if got := scaleUps(d); !mapsEqual(got, tc.want) {
				t.Errorf("scale-ups = %v, want %v (reason %q)", got, tc.want, d.Reason)
			}
			if got := countTasks(d.Unschedulable); got != tc.unschedulable {
				t.Errorf("unschedulable = %d, want %d", got, tc.unschedulable)
			}
			if got := countTasks(d.Waiting); got != tc.waiting {
				t.Errorf("waiting = %d, want %d", got, tc.waiting)
			}
			for _, r := range tc.reason {
				if !strings.Contains(d.Reason, r) {
					t.Errorf("reason %q lacks %q", d.Reason, r)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestDecideFailover: a pool backed off after a quota error is skipped and the
// demand goes to the next pool that fits, on another cloud; the reason says why.
func TestDecideFailover(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	aws := PoolShape{Name: "aws-workers", Provider: "aws", Allocatable: res(4000, 16), Max: 10, Priority: 10}
	gcp := PoolShape{Name: "gcp-workers", Provider: "gcp", Allocatable: res(4000, 16), Max: 10, Priority: 1}
	pending := tasks("t", 12, res(1000, 2), nil)

	cases := []struct {
		name     string
		err      error
		at       time.Duration // when the decision is made, after the failure
		wantPool string
		reason   string
	}{
		{"no failure: priority picks aws", nil, 0, "aws-workers", "pool aws-workers: 3 nodes for 12 pending tasks (priority 10"},
		{"quota fails over to gcp", &providers.Error{Kind: providers.ErrQuota, Cloud: "aws"}, 0, "gcp-workers", "pool aws-workers backed off until 14:00:30: quota exceeded"},
		{"capacity fails over to gcp", fmt.Errorf("create: %w", providers.ErrCapacity), 10 * time.Second, "gcp-workers", "insufficient capacity"},
		{"throttling does not back off", providers.ErrThrottled, 0, "aws-workers", "pool aws-workers: 3"},
		{"backoff expired: aws again", providers.ErrQuota, 30 * time.Second, "aws-workers", "pool aws-workers: 3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			at := now
			b := &Backoff{Now: func() time.Time { return at }}
			if tc.err != nil {
				b.Failed("aws-workers", tc.err)
			}
			at = at.Add(tc.at)
			p := Planner{Expander: Priority{}, Backoff: b}
			d := p.Decide(Demand{Pending: pending, Pools: []PoolShape{aws, gcp}})
			if len(d.ScaleUps) != 1 || d.ScaleUps[0].Pool != tc.wantPool || d.ScaleUps[0].Nodes != 3 {
				t.Fatalf("scale-ups = %+v, want 3 nodes of %s (reason %q)", d.ScaleUps, tc.wantPool, d.Reason)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", d.Reason, tc.reason)
			}
		})
	}
}

func TestGroupTasksOrder(t *testing.T) {
	t.Parallel()
	in := []Task{
		{ID: "small", Requests: res(500, 1)},
		{ID: "memheavy", Requests: res(100, 13)},
		{ID: "cpuheavy", Requests: res(3000, 1)},
		{ID: "small2", Requests: res(500, 1)},
	}
	gs := groupTasks(in, res(4000, 16))
	var got []string
	for _, g := range gs {
		got = append(got, strings.Join(g.ids, "+"))
	}
	want := []string{"memheavy", "cpuheavy", "small+small2"}
	if !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}
