package state_test

import (
	"testing"

	"github.com/provisionhq/provision/state"
	"github.com/provisionhq/provision/state/statetest"
)

func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	statetest.Run(t, func(*testing.T) state.Backend { return state.NewMemory(nil) })
}

func TestMemorySeedAndSnapshot(t *testing.T) {
	t.Parallel()
	seed := &state.State{Lineage: "seed-lineage", Serial: 7, Machines: []state.Machine{{ID: "m1", Phase: state.PhaseJoined}}}
	m := state.NewMemory(seed)
	seed.Machines[0].ID = "changed" // the backend holds its own copy

	s, err := m.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Lineage != "seed-lineage" || s.Serial != 7 || s.Version != state.Version || s.Machine("m1") == nil {
		t.Fatalf("read of seed: %+v", s)
	}
	s.Machines = append(s.Machines, state.Machine{ID: "m2", Phase: state.PhaseIntent})
	if err := m.Write(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	snap := m.Snapshot()
	if snap.Serial != 8 || len(snap.Machines) != 2 {
		t.Fatalf("snapshot: serial %d, %d machines", snap.Serial, len(snap.Machines))
	}
	snap.Machines[0].ID = "changed"
	if m.Snapshot().Machine("m1") == nil {
		t.Error("Snapshot shares memory with the backend")
	}
	if prev := m.Previous(); prev == nil || prev.Serial != 7 {
		t.Errorf("Previous: %+v, want serial 7", prev)
	}
	if state.NewMemory(nil).Snapshot() != nil {
		t.Error("Snapshot of an unwritten backend is not nil")
	}
}
