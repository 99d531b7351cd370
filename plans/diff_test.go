package plans

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

var updateDiff = flag.Bool("update-diff", false, "rewrite testdata/diff golden files")

func TestDiffGolden(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	mach := func(id, pool, role string, phase state.Phase, age int) state.Machine {
		return state.Machine{ID: id, Pool: pool, Provider: "docker", Role: role, Phase: phase, CreatedAt: t0.Add(time.Duration(age) * time.Minute)}
	}
	plan := func(managers, workers int) *Plan {
		return &Plan{Cluster: Cluster{Name: "c"}, Pools: []Pool{
			{Name: "managers", Provider: "docker", Role: providers.RoleManager, Count: managers},
			{Name: "workers", Provider: "docker", Role: providers.RoleWorker, Count: workers},
		}}
	}
	joined := []state.Machine{
		mach("c-managers-aaaaaa", "managers", "manager", state.PhaseJoined, 0),
		mach("c-workers-bbbbbb", "workers", "worker", state.PhaseJoined, 1),
		mach("c-workers-cccccc", "workers", "worker", state.PhaseJoined, 2),
	}
	tests := []struct {
		name     string
		plan     *Plan
		machines []state.Machine
		sizes    map[string]int
		remove   map[string]bool
	}{
		{"fresh", plan(1, 2), nil, nil, nil},
		{"unchanged", plan(1, 2), joined, nil, nil},
		{"scale-up", plan(1, 4), joined, nil, nil},
		{"scale-down-newest-first", plan(1, 1), joined, nil, nil},
		{"scale-down-unfinished-first", plan(1, 1), append(append([]state.Machine{}, joined...), mach("c-workers-dddddd", "workers", "worker", state.PhaseCreated, 0)), nil, nil},
		{"resume-interrupted", plan(1, 2), append(append([]state.Machine{}, joined[:2]...), mach("c-workers-eeeeee", "workers", "worker", state.PhaseIntent, 3)), nil, nil},
		{"pool-removed", &Plan{Cluster: Cluster{Name: "c"}, Pools: plan(1, 0).Pools[:1]}, joined, nil, nil},
		{"managers-keep-primary", &Plan{Cluster: Cluster{Name: "c"}, Pools: []Pool{{Name: "managers", Provider: "docker", Role: providers.RoleManager, Count: 1}}},
			[]state.Machine{mach("c-managers-aaaaaa", "managers", "manager", state.PhaseJoined, 5), mach("c-managers-ffffff", "managers", "manager", state.PhaseJoined, 9), mach("c-managers-000000", "managers", "manager", state.PhaseJoined, 1)}, nil, nil},
		{"provider-changed", &Plan{Cluster: Cluster{Name: "c"}, Pools: []Pool{plan(1, 0).Pools[0], {Name: "workers", Provider: "static", Role: providers.RoleWorker, Count: 2}}}, joined, nil, nil},
		// The autoscaler's recorded size wins over count, within min/max.
		{"autoscaled-size-from-state", autoscaled(plan(1, 1), 1, 5), joined, map[string]int{"workers": 4}, nil},
		{"autoscaled-size-clamped", autoscaled(plan(1, 1), 1, 3), joined, map[string]int{"workers": 9}, nil},
		{"autoscaled-no-size-uses-count", autoscaled(plan(1, 2), 1, 3), joined, nil, nil},
		// The drained node goes, not the newest one.
		{"autoscaler-removes-chosen", autoscaled(plan(1, 1), 1, 3), joined, map[string]int{"workers": 1}, map[string]bool{"c-workers-bbbbbb": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			DiffRemoving(tt.plan, &state.State{Machines: tt.machines, Sizes: tt.sizes}, tt.remove).Render(&buf)
			golden := filepath.Join("testdata", "diff", tt.name+".golden")
			if *updateDiff {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update-diff to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("diff for %s:\n%s\nwant:\n%s", tt.name, buf.String(), want)
			}
		})
	}
}

// autoscaled makes p's workers pool autoscaled between lo and hi.
func autoscaled(p *Plan, lo, hi int) *Plan {
	p.Pool("workers").Autoscale = &PoolAutoscale{Min: lo, Max: hi}
	return p
}
