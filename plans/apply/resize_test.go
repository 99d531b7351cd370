package apply

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/state"
)

func autoscaledPlan(workers, lo, hi int) *plans.Plan {
	p := testPlan(1, workers)
	p.Pool("workers").Autoscale = &plans.PoolAutoscale{Min: lo, Max: hi}
	return p
}

func TestResize(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	p := autoscaledPlan(1, 1, 5)
	if _, err := f.engine.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	rep, err := f.engine.Resize(ctx, p, Resize{Sizes: map[string]int{"workers": 3}})
	if err != nil || rep.Created != 2 {
		t.Fatalf("resize to 3: %+v %v", rep, err)
	}
	// A later plain apply keeps the autoscaler's size, not the plan's count.
	rep, err = f.engine.Apply(ctx, p)
	if err != nil || rep.Created+rep.Deleted != 0 || rep.Unchanged != 4 {
		t.Fatalf("apply after resize changed the pool: %+v %v", rep, err)
	}
	// Shrinking removes the drained machine, even though it is the oldest.
	var oldest string
	for _, m := range f.backend.Snapshot().Machines {
		if m.Pool == "workers" && (oldest == "" || m.CreatedAt.Before(f.backend.Snapshot().Machine(oldest).CreatedAt)) {
			oldest = m.ID
		}
	}
	rep, err = f.engine.Resize(ctx, p, Resize{Sizes: map[string]int{"workers": 2}, Remove: []string{oldest}})
	if err != nil || rep.Deleted != 1 {
		t.Fatalf("resize to 2: %+v %v", rep, err)
	}
	st := f.backend.Snapshot()
	if st.Machine(oldest) != nil {
		t.Errorf("drained machine %s is still in state; another machine was removed instead", oldest)
	}
	if st.Sizes["workers"] != 2 {
		t.Errorf("state records workers size %d, want 2", st.Sizes["workers"])
	}

	// A plan edited since the autoscaler loaded it: more managers, and a
	// pool it never heard of. Resize touches neither.
	edited := autoscaledPlan(1, 1, 5)
	edited.Pool("managers").Count = 2
	before := len(f.backend.Snapshot().Machines)
	rep, err = f.engine.Resize(ctx, edited, Resize{Sizes: map[string]int{"workers": 2}})
	if err != nil || rep.Created+rep.Deleted != 0 || len(f.backend.Snapshot().Machines) != before {
		t.Fatalf("resize with an edited plan changed pools it does not own: %+v %v", rep, err)
	}
	withoutWorkers := autoscaledPlan(1, 1, 5)
	withoutWorkers.Pools = withoutWorkers.Pools[:1]
	withoutWorkers.Pools = append(withoutWorkers.Pools, plans.Pool{Name: "spot", Provider: "fake", Role: "worker", Autoscale: &plans.PoolAutoscale{Max: 3}})
	if rep, err := f.engine.Resize(ctx, withoutWorkers, Resize{Sizes: map[string]int{"spot": 1}}); err != nil || rep.Deleted != 0 || rep.Created != 1 {
		t.Fatalf("resize must not delete a pool missing from its plan: %+v %v", rep, err)
	}

	for _, tt := range []struct {
		name  string
		sizes map[string]int
		want  string
	}{
		{"unknown pool", map[string]int{"gpu": 1}, `no such pool`},
		{"not autoscaled", map[string]int{"managers": 2}, `no autoscale block`},
		{"above max", map[string]int{"workers": 6}, `outside min 1 and max 5`},
		{"below min", map[string]int{"workers": 0}, `outside min 1 and max 5`},
	} {
		if _, err := f.engine.Resize(ctx, p, Resize{Sizes: tt.sizes}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to say %q", tt.name, err, tt.want)
		}
	}
}

// With LockWait, a run waits for another run's lock instead of failing.
func TestLockWait(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	held, err := f.backend.Lock(ctx, state.NewLockInfo("up"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.engine.Apply(ctx, testPlan(1, 1)); !errors.Is(err, state.ErrLocked) {
		t.Fatalf("apply on a held lock without LockWait: %v, want ErrLocked at once", err)
	}
	f.engine.LockWait = 10 * time.Second
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = f.backend.Unlock(ctx, held)
	}()
	if rep, err := f.engine.Apply(ctx, testPlan(1, 1)); err != nil || rep.Created != 2 {
		t.Fatalf("apply with LockWait after the holder let go: %+v %v", rep, err)
	}
}
