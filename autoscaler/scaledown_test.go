package autoscaler

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScaleDownCandidates(t *testing.T) {
	t.Parallel()
	shape := res(4000, 16)
	node := func(name, pool string, used ...Resources) Node {
		n := Node{Name: name, Pool: pool, Allocatable: shape}
		for i, u := range used {
			n.Tasks = append(n.Tasks, Task{ID: name + "-t" + string(rune('0'+i)), Requests: u})
			n.Allocated = n.Allocated.Add(u)
		}
		return n
	}
	manager := func(n Node) Node { n.Manager = true; return n }
	labelled := func(n Node, l map[string]string) Node { n.Labels = l; return n }
	w := func(min, current int) []PoolShape {
		return []PoolShape{{Name: "w", Allocatable: shape, Min: min, Current: current, Max: 10}}
	}
	cases := []struct {
		name    string
		nodes   []Node
		pools   []PoolShape
		elapsed time.Duration // between the first and the second pass
		want    []string
	}{
		{
			name:    "empty node after the unneeded time",
			nodes:   []Node{node("a", "w", res(3000, 8)), node("b", "w")},
			pools:   w(0, 2),
			elapsed: 10 * time.Minute,
			want:    []string{"b"},
		},
		{
			name:    "not before the unneeded time",
			nodes:   []Node{node("a", "w", res(3000, 8)), node("b", "w")},
			pools:   w(0, 2),
			elapsed: 9 * time.Minute,
		},
		{
			name:    "busy on either resource stays",
			nodes:   []Node{node("a", "w", res(500, 9)), node("b", "w", res(2500, 1))},
			pools:   w(0, 2),
			elapsed: time.Hour,
		},
		{
			name:    "tasks move to the remaining nodes",
			nodes:   []Node{node("a", "w", res(2000, 8)), node("b", "w", res(1000, 2))},
			pools:   w(0, 2),
			elapsed: time.Hour,
			want:    []string{"b"},
		},
		{
			name:    "tasks that fit nowhere keep the node",
			nodes:   []Node{node("a", "w", res(3500, 2)), node("b", "w", res(1000, 2))},
			pools:   w(0, 2),
			elapsed: time.Hour,
		},
		{
			name: "tasks with a selector need a matching node",
			nodes: []Node{
				node("a", "w"),
				{Name: "b", Pool: "w", Allocatable: shape, Allocated: res(100, 1), Tasks: []Task{{ID: "g", Requests: res(100, 1), NodeSelector: map[string]string{"zone": "x"}}}},
			},
			pools:   w(0, 2),
			elapsed: time.Hour,
			want:    []string{"a"}, // b's task cannot move; a is empty
		},
		{
			name:    "selector satisfied elsewhere",
			nodes:   []Node{labelled(node("a", "w", res(1000, 1)), map[string]string{"zone": "x"}), {Name: "b", Pool: "w", Allocatable: shape, Allocated: res(100, 1), Tasks: []Task{{ID: "g", Requests: res(100, 1), NodeSelector: map[string]string{"zone": "x"}}}}},
			pools:   w(0, 2),
			elapsed: time.Hour,
			want:    []string{"b"}, // least utilized first; then a received b's task and stays
		},
		{
			name:    "never below min",
			nodes:   []Node{node("a", "w"), node("b", "w"), node("c", "w")},
			pools:   w(2, 3),
			elapsed: time.Hour,
			want:    []string{"a"},
		},
		{
			name:    "never a manager",
			nodes:   []Node{manager(node("m", "w")), node("a", "w", res(3000, 1))},
			pools:   w(0, 2),
			elapsed: time.Hour,
		},
		{
			name:    "nodes of no plan pool are not ours",
			nodes:   []Node{node("x", ""), node("a", "w", res(3000, 1))},
			pools:   w(0, 1),
			elapsed: time.Hour,
		},
		{
			name:    "two candidates share the remaining capacity",
			nodes:   []Node{node("a", "w", res(2000, 1)), node("b", "w", res(1000, 1)), node("c", "w", res(1500, 1))},
			pools:   w(0, 3),
			elapsed: time.Hour,
			want:    []string{"b"}, // b's task takes a's spare 1000m; c's 1500m then fits nowhere
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			t0 := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
			now := t0
			s := &ScaleDown{Now: func() time.Time { return now }}
			if got := s.Candidates(tc.nodes, tc.pools); len(got) != 0 {
				t.Fatalf("first pass: %v, want none before the unneeded time", got)
			}
			now = t0.Add(tc.elapsed)
			var got []string
			for _, c := range s.Candidates(tc.nodes, tc.pools) {
				got = append(got, c.Node)
				if !strings.Contains(c.Reason, "node "+c.Node) {
					t.Errorf("reason %q", c.Reason)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("candidates = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestScaleDownForgets: a node that goes busy again restarts its unneeded time.
func TestScaleDownForgets(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	now := t0
	s := &ScaleDown{Now: func() time.Time { return now }, UnneededTime: time.Minute}
	idle := []Node{{Name: "a", Pool: "w", Allocatable: res(4000, 16)}, {Name: "b", Pool: "w", Allocatable: res(4000, 16), Allocated: res(3000, 1)}}
	busy := slices.Clone(idle)
	busy[0].Allocated = res(3000, 1)
	pools := []PoolShape{{Name: "w", Current: 2}}
	s.Candidates(idle, pools)
	now = now.Add(50 * time.Second)
	s.Candidates(busy, pools)
	now = now.Add(50 * time.Second)
	if got := s.Candidates(idle, pools); len(got) != 0 {
		t.Fatalf("got %v right after going idle again", got)
	}
	now = now.Add(time.Minute)
	if got := s.Candidates(idle, pools); len(got) != 1 || got[0].Node != "a" || !strings.Contains(got[0].Reason, "for 1m0s") {
		t.Fatalf("got %v, want a after a full minute idle", got)
	}
}
