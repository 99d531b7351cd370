package state

import (
	"slices"
	"strings"
)

// roleManager is providers.RoleManager; state stays a leaf package and
// stores roles as text.
const roleManager = "manager"

// PrimaryManager is the manager other nodes join through and every front
// end talks to first: the oldest joined manager, or nil when the cluster
// has none yet. This is the one place that choice is made.
func (s *State) PrimaryManager() *Machine {
	if ms := s.ManagersFrom(""); len(ms) > 0 {
		return s.Machine(ms[0])
	}
	return nil
}

// ManagersFrom lists the joined managers to go through, first when it is
// a manager, then the others oldest first (the primary leads them): when
// one does not answer, the next stands in.
func (s *State) ManagersFrom(first string) []string {
	var ms []*Machine
	for i := range s.Machines {
		m := &s.Machines[i]
		if m.Role == roleManager && m.Phase == PhaseJoined && m.ID != first {
			ms = append(ms, m)
		}
	}
	slices.SortStableFunc(ms, func(a, b *Machine) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	var out []string
	if m := s.Machine(first); m != nil && m.Role == roleManager {
		out = append(out, first)
	}
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}
