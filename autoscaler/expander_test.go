package autoscaler

import (
	"errors"
	"strings"
	"testing"
)

func opt(name string, nodes, tasks int, waste, price float64, prio int) Option {
	return Option{Pool: PoolShape{Name: name, PricePerHour: price, Priority: prio}, Nodes: nodes, Tasks: tasks, Waste: waste}
}

func TestExpanders(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		exp  Expander
		opts []Option
		want string
		why  string
	}{
		{"least-waste: one option", LeastWaste{}, []Option{opt("a", 1, 1, 0.5, 0, 0)}, "a", "least-waste 50%"},
		{"least-waste: smallest waste", LeastWaste{}, []Option{opt("a", 2, 8, 0.30, 0, 0), opt("b", 3, 8, 0.18, 0, 0)}, "b", "least-waste 18%"},
		{"least-waste: tie goes to more tasks", LeastWaste{}, []Option{opt("a", 1, 4, 0.2, 0, 0), opt("b", 2, 8, 0.2, 0, 0)}, "b", ""},
		{"least-waste: full tie goes to name", LeastWaste{}, []Option{opt("b", 1, 4, 0.2, 0, 0), opt("a", 1, 4, 0.2, 0, 0)}, "a", ""},
		{"price: cheapest per task", Price{}, []Option{opt("a", 2, 8, 0.1, 1.0, 0), opt("b", 1, 8, 0.5, 1.5, 0)}, "b", "price $1.50/h"},
		{"price: unknown price last", Price{}, []Option{opt("free", 1, 8, 0, 0, 0), opt("b", 4, 8, 0.5, 3, 0)}, "b", ""},
		{"price: all unknown falls back to waste", Price{}, []Option{opt("a", 1, 8, 0.4, 0, 0), opt("b", 1, 8, 0.1, 0, 0)}, "b", "price unknown"},
		{"price: tie goes to least waste", Price{}, []Option{opt("a", 1, 4, 0.4, 1, 0), opt("b", 1, 4, 0.1, 1, 0)}, "b", ""},
		{"priority: highest wins over waste", Priority{}, []Option{opt("a", 1, 4, 0.0, 0, 1), opt("b", 1, 4, 0.9, 0, 5)}, "b", "priority 5"},
		{"priority: tie goes to least waste", Priority{}, []Option{opt("a", 1, 4, 0.3, 0, 5), opt("b", 1, 4, 0.1, 0, 5)}, "b", "waste 10%"},
		{"priority: negative below default", Priority{}, []Option{opt("a", 1, 4, 0.3, 0, -1), opt("b", 1, 4, 0.5, 0, 0)}, "b", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			i, why := tc.exp.Choose(tc.opts)
			if got := tc.opts[i].Pool.Name; got != tc.want {
				t.Errorf("chose %s, want %s (%s)", got, tc.want, why)
			}
			if !strings.Contains(why, tc.why) {
				t.Errorf("why %q lacks %q", why, tc.why)
			}
		})
	}
}

func TestExpanderByName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, want string
		err        error
	}{
		{"", LeastWasteName, nil},
		{"least-waste", LeastWasteName, nil},
		{"price", PriceName, nil},
		{"priority", PriorityName, nil},
		{"random", "", ErrUnknownExpander},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := ExpanderByName(tc.name)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && e.Name() != tc.want {
				t.Errorf("name = %s, want %s", e.Name(), tc.want)
			}
		})
	}
}
