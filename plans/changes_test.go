package plans

import (
	"errors"
	"strings"
	"testing"

	"github.com/provisionhq/provision/state"
)

// TestChangesRefuseAnotherState: changes apply only to the state version
// they were computed against; another cluster's state or a newer version
// of this one is refused, saying what moved.
func TestChangesRefuseAnotherState(t *testing.T) {
	t.Parallel()
	at := &state.State{Lineage: "lin-a", Serial: 4, Machines: []state.Machine{{ID: "c-w-1", Pool: "w", Phase: state.PhaseJoined}}}
	c := Diff(&Plan{}, at) // the plan dropped pool w: one delete
	if c.Count(Delete) != 1 || c.Lineage != "lin-a" || c.Serial != 4 {
		t.Fatalf("diff = %+v, want one delete against lin-a/4", c)
	}
	tests := []struct {
		name     string
		st       *state.State
		wantText []string // empty: accepted
	}{
		{"same version", &state.State{Lineage: "lin-a", Serial: 4}, nil},
		{"written since", &state.State{Lineage: "lin-a", Serial: 5}, []string{"serial 4", "serial 5", "compute the plan again"}},
		{"older version", &state.State{Lineage: "lin-a", Serial: 3}, []string{"serial 4", "serial 3"}},
		{"another cluster", &state.State{Lineage: "lin-b", Serial: 4}, []string{`"lin-a"`, `"lin-b"`, "different cluster"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := c.CheckState(tt.st)
			if len(tt.wantText) == 0 {
				if err != nil {
					t.Fatalf("CheckState: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrStaleChanges) {
				t.Fatalf("CheckState: %v, want ErrStaleChanges", err)
			}
			for _, w := range tt.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// Only keeps the version it was cut from.
	if err := c.Only(map[string]bool{}).CheckState(at); err != nil {
		t.Errorf("Only lost the state version: %v", err)
	}
}
