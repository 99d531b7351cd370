package state_test

import (
	"slices"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

// The primary manager is the oldest joined manager (ID breaks ties); the
// others follow it, oldest first, and a named first manager leads.
func TestPrimaryManager(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	mgr, wrk := string(providers.RoleManager), string(providers.RoleWorker)
	machines := []state.Machine{
		{ID: "c-m-b", Role: mgr, Phase: state.PhaseJoined, CreatedAt: at.Add(time.Minute)},
		{ID: "c-w-a", Role: wrk, Phase: state.PhaseJoined, CreatedAt: at},
		{ID: "c-m-c", Role: mgr, Phase: state.PhaseJoined, CreatedAt: at.Add(time.Minute)},
		{ID: "c-m-z", Role: mgr, Phase: state.PhaseReady, CreatedAt: at},
		{ID: "c-m-d", Role: mgr, Phase: state.PhaseJoined, CreatedAt: at.Add(2 * time.Minute)},
	}
	tests := []struct {
		name     string
		machines []state.Machine
		first    string
		primary  string
		order    []string
	}{
		{name: "empty", primary: ""},
		{name: "workers only", machines: machines[1:2], primary: ""},
		{name: "oldest joined, ties by ID", machines: machines, primary: "c-m-b", order: []string{"c-m-b", "c-m-c", "c-m-d"}},
		{name: "named first leads", machines: machines, first: "c-m-d", primary: "c-m-b", order: []string{"c-m-d", "c-m-b", "c-m-c"}},
		{name: "a manager not yet joined may lead", machines: machines, first: "c-m-z", primary: "c-m-b", order: []string{"c-m-z", "c-m-b", "c-m-c", "c-m-d"}},
		{name: "a worker never leads", machines: machines, first: "c-w-a", primary: "c-m-b", order: []string{"c-m-b", "c-m-c", "c-m-d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &state.State{Machines: tt.machines}
			got := ""
			if pm := st.PrimaryManager(); pm != nil {
				got = pm.ID
			}
			if got != tt.primary {
				t.Errorf("PrimaryManager = %q, want %q", got, tt.primary)
			}
			if order := st.ManagersFrom(tt.first); !slices.Equal(order, tt.order) {
				t.Errorf("ManagersFrom(%q) = %v, want %v", tt.first, order, tt.order)
			}
		})
	}
}
