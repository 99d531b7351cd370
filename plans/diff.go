package plans

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

// Action is what the engine does to one machine.
type Action int

const (
	NoOp   Action = iota
	Create        // make a new machine and bootstrap it
	Delete        // drain, remove from the cluster, delete the machine
	Resume        // the machine exists but its bootstrap did not finish
)

func (a Action) String() string {
	switch a {
	case NoOp:
		return "no-op"
	case Create:
		return "create"
	case Delete:
		return "delete"
	case Resume:
		return "resume"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Change is one machine's action. Before is the machine in state (nil for a
// Create). Reason is for display only: the engine never branches on it.
type Change struct {
	Action   Action
	Pool     string
	Provider string
	Role     providers.Role
	Before   *state.Machine
	Reason   string

	// For Render only: sized is a change the pool's size asks for (not
	// one of the machine's own), autoscaled says the pool is autoscaled.
	sized, autoscaled bool
}

// Changes is a diff of a plan against one version of a state: the state's
// Lineage and Serial say which, and CheckState refuses any other.
type Changes struct {
	Lineage string
	Serial  uint64
	Items   []Change
}

// ErrStaleChanges means changes were computed against another state than
// the one they would be applied to: a state of another cluster (lineage), or
// an older version of this one (serial), written since by another run. Their
// creates and deletes no longer fit (a machine to delete may be gone, a pool
// already grown), so they are refused as Terraform refuses a stale saved
// plan; computing the changes again is the fix.
var ErrStaleChanges = errors.New("plan is stale")

// CheckState returns nil when c was computed against s as it is now, and an
// error wrapping ErrStaleChanges that says what moved otherwise.
func (c *Changes) CheckState(s *state.State) error {
	switch {
	case c.Lineage != s.Lineage:
		return fmt.Errorf("%w: it was computed against state lineage %q, this state's lineage is %q (a different cluster's state); compute the plan again against this state", ErrStaleChanges, c.Lineage, s.Lineage)
	case c.Serial != s.Serial:
		return fmt.Errorf("%w: it was computed against state serial %d, the state is now at serial %d (written by another run since); compute the plan again", ErrStaleChanges, c.Serial, s.Serial)
	}
	return nil
}

// Count returns how many changes have action a.
func (c *Changes) Count(a Action) int {
	n := 0
	for _, it := range c.Items {
		if it.Action == a {
			n++
		}
	}
	return n
}

// Only keeps the changes to the named pools; the others' machines are left
// as they are (their creates dropped, their deletes and resumes turned into
// no-ops). The autoscaler's runs use it: a plan edited since it started
// must not make it add managers or delete a pool it does not own.
func (c *Changes) Only(pools map[string]bool) *Changes {
	out := &Changes{Lineage: c.Lineage, Serial: c.Serial}
	for _, it := range c.Items {
		switch {
		case pools[it.Pool]:
		case it.Action == Create:
			continue
		case it.Action != NoOp:
			it.Action, it.Reason = NoOp, "left to provision up: not an autoscaled pool"
		}
		out.Items = append(out.Items, it)
	}
	return out
}

// Empty reports whether applying would change nothing.
func (c *Changes) Empty() bool { return c.Count(NoOp) == len(c.Items) }

// Diff compares the plan with the state. Pools that shrink give up their
// least valuable machines first: unfinished ones, then the newest, and
// never the cluster's primary manager while its pool keeps any machine.
// Autoscaled pools are sized by the state's Sizes (see Pool.Size).
func Diff(p *Plan, s *state.State) *Changes { return DiffRemoving(p, s, nil) }

// DiffRemoving is Diff where the machines in remove are the first a
// shrinking pool gives up: the nodes the autoscaler drained.
func DiffRemoving(p *Plan, s *state.State, remove map[string]bool) *Changes {
	c := &Changes{Lineage: s.Lineage, Serial: s.Serial}
	byPool := map[string][]state.Machine{}
	for _, m := range s.Machines {
		byPool[m.Pool] = append(byPool[m.Pool], m)
	}
	primary := ""
	if pm := s.PrimaryManager(); pm != nil {
		primary = pm.ID
	}
	for _, pool := range p.Pools {
		var keep []state.Machine
		for _, m := range byPool[pool.Name] {
			switch {
			case m.Phase == state.PhaseRemoving:
				c.add(Delete, pool, m, "removal was interrupted")
			case m.Provider != pool.Provider:
				c.add(Delete, pool, m, fmt.Sprintf("pool moved from %s to %s", m.Provider, pool.Provider))
			case m.Role != string(pool.Role):
				c.add(Delete, pool, m, fmt.Sprintf("pool role changed from %s to %s", m.Role, pool.Role))
			default:
				keep = append(keep, m)
			}
		}
		delete(byPool, pool.Name)
		sort.SliceStable(keep, func(i, j int) bool { return deleteFirst(keep[i], keep[j], primary, remove) })
		count := pool.Size(s.Sizes)
		excess := len(keep) - count
		for i, m := range keep {
			switch {
			case i < excess:
				c.add(Delete, pool, m, sizeReason(pool, len(keep), count, remove[m.ID]))
				c.Items[len(c.Items)-1].sized = !remove[m.ID]
			case m.Phase != state.PhaseJoined:
				c.add(Resume, pool, m, fmt.Sprintf("bootstrap stopped at %q", m.Phase))
			default:
				c.add(NoOp, pool, m, "")
			}
		}
		for i := len(keep); i < count; i++ {
			c.Items = append(c.Items, Change{Action: Create, Pool: pool.Name, Provider: pool.Provider, Role: pool.Role,
				Reason: sizeReason(pool, len(keep), count, false), sized: true, autoscaled: pool.Autoscale != nil})
		}
	}
	// Machines of pools that left the plan.
	gone := make([]string, 0, len(byPool))
	for name := range byPool {
		gone = append(gone, name)
	}
	sort.Strings(gone)
	for _, name := range gone {
		for _, m := range byPool[name] {
			c.add(Delete, Pool{Name: name, Provider: m.Provider, Role: providers.Role(m.Role)}, m, "pool removed from the plan")
		}
	}
	return c
}

func (c *Changes) add(a Action, p Pool, m state.Machine, reason string) {
	m2 := m
	c.Items = append(c.Items, Change{Action: a, Pool: p.Name, Provider: m.Provider, Role: providers.Role(m.Role), Before: &m2, Reason: reason,
		autoscaled: p.Autoscale != nil})
}

func sizeReason(pool Pool, from, to int, chosen bool) string {
	switch {
	case chosen:
		return fmt.Sprintf("drained by the autoscaler, %d → %d", from, to)
	case pool.Autoscale != nil:
		return fmt.Sprintf("autoscaled %d → %d", from, to)
	}
	return fmt.Sprintf("count %d → %d", from, to)
}

// deleteFirst orders a pool's machines so the ones to give up come first.
func deleteFirst(a, b state.Machine, primary string, remove map[string]bool) bool {
	if (a.ID == primary) != (b.ID == primary) {
		return b.ID == primary
	}
	if remove[a.ID] != remove[b.ID] {
		return remove[a.ID]
	}
	if aj, bj := a.Phase == state.PhaseJoined, b.Phase == state.PhaseJoined; aj != bj {
		return bj
	}
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	return a.ID > b.ID
}

// Render writes the changes for a person: one line per pool that changes,
// with its machine count before and after and the machines it adds,
// removes or resumes, then the totals. New machines have no names yet:
// `up` names them when it records them.
func (c *Changes) Render(w io.Writer) {
	if c.Empty() {
		fmt.Fprintf(w, "No changes: %d machines match the plan.\n", len(c.Items))
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, pc := range c.byPool() {
		if line := pc.render(); line != "" {
			fmt.Fprintln(tw, line)
		}
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "Plan: %d to create, %d to delete, %d to resume, %d unchanged.\n",
		c.Count(Create), c.Count(Delete), c.Count(Resume), c.Count(NoOp))
}

// poolChanges are one pool's changes, in diff order.
type poolChanges struct {
	name  string
	items []Change
}

// byPool groups the changes by pool, pools in the order they first appear.
func (c *Changes) byPool() []*poolChanges {
	var out []*poolChanges
	idx := map[string]*poolChanges{}
	for _, it := range c.Items {
		pc, ok := idx[it.Pool]
		if !ok {
			pc = &poolChanges{name: it.Pool}
			idx[it.Pool] = pc
			out = append(out, pc)
		}
		pc.items = append(pc.items, it)
	}
	return out
}

// render is the pool's line, tab-separated into columns; "" when the pool
// is unchanged.
func (pc *poolChanges) render() string {
	var before, creates, deletes, resumes int
	var providers, roles []string
	autoscaled := false
	for _, it := range pc.items {
		if it.Before != nil {
			before++
		}
		switch it.Action {
		case Create:
			creates++
		case Delete:
			deletes++
		case Resume:
			resumes++
		}
		if !slices.Contains(providers, it.Provider) {
			providers = append(providers, it.Provider)
		}
		if !slices.Contains(roles, string(it.Role)) {
			roles = append(roles, string(it.Role))
		}
		autoscaled = autoscaled || it.autoscaled
	}
	if creates+deletes+resumes == 0 {
		return ""
	}
	sym := "~"
	switch {
	case deletes+resumes == 0:
		sym = "+"
	case creates+resumes == 0:
		sym = "-"
	}
	count := fmt.Sprintf("%d → %d", before, before-deletes+creates)
	if autoscaled {
		count += " (autoscaled)"
	}
	var parts []string
	if creates > 0 {
		parts = append(parts, fmt.Sprintf("create %d new", creates))
	}
	parts = append(parts, pc.named(Delete, "delete")...)
	parts = append(parts, pc.named(Resume, "resume")...)
	return fmt.Sprintf("  %s %s\t%s on %s\t%s\t%s", sym, pc.name, strings.Join(roles, " → "), strings.Join(providers, " → "), count, strings.Join(parts, "; "))
}

// named lists the machines with action a, grouped by reason; a reason the
// pool's count already says (a resize) is left out.
func (pc *poolChanges) named(a Action, verb string) []string {
	var reasons []string
	ids := map[string][]string{}
	for _, it := range pc.items {
		if it.Action != a {
			continue
		}
		reason := it.Reason
		if it.sized {
			reason = ""
		}
		if _, ok := ids[reason]; !ok {
			reasons = append(reasons, reason)
		}
		ids[reason] = append(ids[reason], it.Before.ID)
	}
	out := make([]string, 0, len(reasons))
	for _, r := range reasons {
		s := verb + " " + strings.Join(ids[r], ", ")
		if r != "" {
			s += " (" + r + ")"
		}
		out = append(out, s)
	}
	return out
}
