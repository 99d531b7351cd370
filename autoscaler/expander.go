package autoscaler

import (
	"cmp"
	"fmt"
)

// Option is one way to scale up: Nodes new machines of Pool, holding Tasks
// pending tasks, leaving Waste (0..1, the mean of the unused CPU and memory
// fractions of the new machines) idle.
type Option struct {
	Pool  PoolShape
	Nodes int
	Tasks int
	Waste float64
}

// Expander chooses among scale-up options, like the cluster autoscaler's
// expanders. Choose gets at least one option and returns the index of the
// chosen one and why, for the decision's reason ("least-waste 18%").
type Expander interface {
	Name() string
	Choose(opts []Option) (int, string)
}

// Expander names, as written in the plan's autoscale block.
const (
	LeastWasteName = "least-waste"
	PriceName      = "price"
	PriorityName   = "priority"
)

// ExpanderByName returns the named expander; "" is least-waste.
func ExpanderByName(name string) (Expander, error) {
	switch name {
	case "", LeastWasteName:
		return LeastWaste{}, nil
	case PriceName:
		return Price{}, nil
	case PriorityName:
		return Priority{}, nil
	}
	return nil, fmt.Errorf("%w %q (want %s, %s or %s)", ErrUnknownExpander, name, LeastWasteName, PriceName, PriorityName)
}

// byLeastWaste orders options by waste, then more tasks placed, then pool name,
// so every expander breaks ties the same deterministic way.
func byLeastWaste(a, b Option) int {
	if c := cmp.Compare(a.Waste, b.Waste); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Tasks, a.Tasks); c != 0 {
		return c
	}
	return cmp.Compare(a.Pool.Name, b.Pool.Name)
}

func best(opts []Option, less func(a, b Option) int) int {
	bi := 0
	for i := 1; i < len(opts); i++ {
		if less(opts[i], opts[bi]) < 0 {
			bi = i
		}
	}
	return bi
}

// LeastWaste picks the option that leaves the least CPU and memory idle (the
// default).
type LeastWaste struct{}

func (LeastWaste) Name() string { return LeastWasteName }

func (LeastWaste) Choose(opts []Option) (int, string) {
	i := best(opts, byLeastWaste)
	return i, fmt.Sprintf("least-waste %.0f%%", opts[i].Waste*100)
}

// Price picks the cheapest option per task placed (options place different
// numbers of tasks, so comparing totals would favour placing fewer). Pools
// without a price come last; ties go to least waste.
type Price struct{}

func (Price) Name() string { return PriceName }

func perTask(o Option) float64 {
	return o.Pool.PricePerHour * float64(o.Nodes) / float64(max(o.Tasks, 1))
}

func (Price) Choose(opts []Option) (int, string) {
	i := best(opts, func(a, b Option) int {
		ap, bp := a.Pool.PricePerHour > 0, b.Pool.PricePerHour > 0
		switch {
		case ap && !bp:
			return -1
		case !ap && bp:
			return 1
		}
		if c := cmp.Compare(perTask(a), perTask(b)); ap && c != 0 {
			return c
		}
		return byLeastWaste(a, b)
	})
	o := opts[i]
	if o.Pool.PricePerHour <= 0 {
		return i, fmt.Sprintf("price unknown, least-waste %.0f%%", o.Waste*100)
	}
	return i, fmt.Sprintf("price $%.2f/h, $%.4f per task-hour", o.Pool.PricePerHour*float64(o.Nodes), perTask(o))
}

// Priority picks the pool with the highest priority; ties go to least waste.
type Priority struct{}

func (Priority) Name() string { return PriorityName }

func (Priority) Choose(opts []Option) (int, string) {
	i := best(opts, func(a, b Option) int {
		if c := cmp.Compare(b.Pool.Priority, a.Pool.Priority); c != 0 {
			return c
		}
		return byLeastWaste(a, b)
	})
	return i, fmt.Sprintf("priority %d, waste %.0f%%", opts[i].Pool.Priority, opts[i].Waste*100)
}

var (
	_ Expander = LeastWaste{}
	_ Expander = Price{}
	_ Expander = Priority{}
)
