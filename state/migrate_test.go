package state

import (
	"errors"
	"os"
	"testing"
)

// testdata/v0.json is a hand-written document in a made-up "v0" shape (the
// machine list under "nodes"), to exercise the migration mechanism; no v0
// was ever released, so the step lives only here.
var testSteps = []migration{{
	From: 0,
	Name: "v0 to v1: rename nodes to machines",
	Apply: func(doc map[string]any) error {
		nodes, ok := doc["nodes"]
		if !ok {
			return errors.New("no nodes")
		}
		doc["machines"] = nodes
		delete(doc, "nodes")
		return nil
	},
}}

func TestMigrate(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/v0.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		steps   []migration
		wantErr error
	}{
		{"with the step", testSteps, nil},
		{"without a step", nil, ErrUnsupportedVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := decode(raw, tt.steps)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("decode: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Version != Version || s.Serial != 4 || s.Lineage != "0b6e6f1e-2f7c-4f53-9a8e-3d2c1b0a9f8e" {
				t.Errorf("header: %+v", s)
			}
			if m := s.Machine("m1"); m == nil || m.Phase != PhaseJoined || m.Address != "10.0.0.5" {
				t.Errorf("machine m1 after migration: %+v", m)
			}
		})
	}
}

// TestMigrationsComplete: the shipped steps form an unbroken chain ending
// at Version, each named.
func TestMigrationsComplete(t *testing.T) {
	t.Parallel()
	for i, m := range migrations {
		if m.Name == "" || m.Apply == nil {
			t.Errorf("migration %d has no name or no Apply", i)
		}
		if i > 0 && m.From != migrations[i-1].From+1 {
			t.Errorf("migration %q follows from %d", m.Name, migrations[i-1].From)
		}
	}
	if n := len(migrations); n > 0 && migrations[n-1].From != Version-1 {
		t.Errorf("last migration goes from %d, want %d", migrations[n-1].From, Version-1)
	}
}

func TestNewLineage(t *testing.T) {
	t.Parallel()
	a, b := NewLineage(), NewLineage()
	if a == b {
		t.Error("two lineages are equal")
	}
	if len(a) != 36 || a[8] != '-' || a[14] != '4' {
		t.Errorf("lineage %q is not UUID v4 form", a)
	}
}
