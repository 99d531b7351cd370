package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

// Refresh brings state in line with the provider and touches no machine:
// a vanished machine is forgotten, a moved one gets its new address, an
// orphan is left for the next apply.
func TestRefreshChangesStateOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	p := testPlan(1, 2)
	if _, err := f.engine.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	var workers []string
	for _, m := range f.backend.Snapshot().Machines {
		if m.Role == "worker" {
			workers = append(workers, m.ID)
		}
	}
	delete(f.prov.machines, providers.MachineID(workers[0])) // deleted by hand
	moved := f.prov.machines[providers.MachineID(workers[1])]
	moved.Address = "10.9.9.9"
	f.prov.machines[moved.ID] = moved
	f.prov.machines["t-workers-orphan"] = providers.Machine{ID: "t-workers-orphan", Cluster: "t", Pool: "workers"}
	creates, machines := f.prov.creates, f.prov.count()

	rep, err := f.engine.Refresh(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Forgotten != 1 || rep.Orphans != 0 || rep.Created+rep.Deleted != 0 {
		t.Errorf("report %+v: want 1 forgotten, nothing created or deleted", rep)
	}
	if f.prov.creates != creates || f.prov.count() != machines {
		t.Errorf("refresh created or deleted machines: creates %d → %d, machines %d → %d", creates, f.prov.creates, machines, f.prov.count())
	}
	st := f.backend.Snapshot()
	if st.Machine(workers[0]) != nil {
		t.Errorf("vanished machine %s still in state", workers[0])
	}
	if m := st.Machine(workers[1]); m == nil || m.Address != "10.9.9.9" {
		t.Errorf("moved machine: %+v, want address 10.9.9.9", m)
	}
	if _, ok := f.prov.machines["t-workers-orphan"]; !ok {
		t.Error("refresh deleted the orphan; only an apply may")
	}
}

// DialManager goes through the primary first and falls back to the next
// joined manager, oldest first, when one does not answer.
func TestDialManager(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	st := &state.State{Machines: []state.Machine{
		{ID: "m-new", Role: "manager", Phase: state.PhaseJoined, CreatedAt: at.Add(2 * time.Minute)},
		{ID: "w-old", Role: "worker", Phase: state.PhaseJoined, CreatedAt: at},
		{ID: "m-old", Role: "manager", Phase: state.PhaseJoined, CreatedAt: at.Add(time.Minute)},
		{ID: "m-intent", Role: "manager", Phase: state.PhaseIntent, CreatedAt: at},
	}}
	tests := []struct {
		name    string
		down    map[string]bool
		want    string
		tried   string
		wantErr string
	}{
		{name: "primary answers", want: "m-old", tried: "m-old"},
		{name: "primary down", down: map[string]bool{"m-old": true}, want: "m-new", tried: "m-old m-new"},
		{name: "all down", down: map[string]bool{"m-old": true, "m-new": true}, tried: "m-old m-new", wantErr: "connect to manager m-new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var tried []string
			_, m, err := DialManager(context.Background(), st, "", func(_ context.Context, m state.Machine) (string, error) {
				tried = append(tried, m.ID)
				if tt.down[m.ID] {
					return "", fmt.Errorf("no route to %s", m.ID)
				}
				return m.ID, nil
			})
			if got := strings.Join(tried, " "); got != tt.tried {
				t.Errorf("tried %q, want %q", got, tt.tried)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || m.ID != tt.want {
				t.Errorf("DialManager = %s, %v; want %s", m.ID, err, tt.want)
			}
		})
	}
	if _, _, err := DialManager(context.Background(), &state.State{}, "", func(context.Context, state.Machine) (int, error) { return 0, nil }); !errors.Is(err, ErrNoManager) {
		t.Errorf("no manager: err = %v, want ErrNoManager", err)
	}
}
