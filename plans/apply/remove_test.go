package apply

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/provisionhq/provision/providers"
)

// deleteCounter records each Delete call its provider gets.
type deleteCounter struct {
	providers.Provider
	mu    sync.Mutex
	calls [][]providers.MachineID
	err   error
}

func (d *deleteCounter) Delete(ctx context.Context, ids []providers.MachineID) error {
	d.mu.Lock()
	d.calls = append(d.calls, slices.Clone(ids))
	err := d.err
	d.mu.Unlock()
	if err != nil {
		return err
	}
	return d.Provider.Delete(ctx, ids)
}

// countDeletes puts a deleteCounter between f's engine and its provider.
func countDeletes(f *fixture) *deleteCounter {
	d := &deleteCounter{Provider: f.prov}
	reg := providers.NewRegistry()
	reg.Register("fake", providers.Entry{New: func(context.Context, providers.Env) (providers.Provider, error) { return d, nil }})
	f.engine.Providers = reg
	return d
}

// TestScaleDownIsOneDeletePerPool: machines leaving drain one by one, but
// their provider is asked once per pool, workers before managers, with
// every machine of the pool in that one call.
func TestScaleDownIsOneDeletePerPool(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := countDeletes(f)
	ctx := context.Background()
	if _, err := f.engine.Apply(ctx, testPlan(3, 6)); err != nil {
		t.Fatal(err)
	}
	rep, err := f.engine.Apply(ctx, testPlan(1, 2))
	if err != nil || rep.Deleted != 6 {
		t.Fatalf("scale down: %+v %v", rep, err)
	}
	if len(d.calls) != 2 || len(d.calls[0]) != 4 || len(d.calls[1]) != 2 {
		t.Fatalf("Delete calls %v: want one with the 4 workers, then one with the 2 managers", d.calls)
	}
	for _, id := range d.calls[0] {
		if !strings.Contains(string(id), "workers") {
			t.Errorf("first Delete has %s: workers go first", id)
		}
	}
	if got := f.driver.count("remove"); got != 6 {
		t.Errorf("removed from the cluster %d times, want 6 (each drains before the delete)", got)
	}
	if f.prov.count() != 3 || len(f.backend.Snapshot().Machines) != 3 {
		t.Errorf("provider has %d machines, state %d; want 3", f.prov.count(), len(f.backend.Snapshot().Machines))
	}
}

// TestFailedDeleteKeepsTheMachines: a pool's Delete that fails fails each
// of its machines; they stay in state, drained, and the next run deletes
// them in one call again.
func TestFailedDeleteKeepsTheMachines(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := countDeletes(f)
	ctx := context.Background()
	if _, err := f.engine.Apply(ctx, testPlan(1, 4)); err != nil {
		t.Fatal(err)
	}
	d.err = &providers.Error{Kind: providers.ErrUnavailable, Cloud: "fake", Code: "InternalError"}
	rep, err := f.engine.Apply(ctx, testPlan(1, 1))
	var me *MachineError
	if !errors.Is(err, providers.ErrUnavailable) || !errors.As(err, &me) || me.Stage != string(StageDelete) {
		t.Fatalf("err = %v, want the delete's failure", err)
	}
	if rep.Deleted != 0 || len(rep.Failed) != 3 {
		t.Fatalf("report %+v: want nothing deleted and 3 machines failed", rep)
	}
	if n := len(f.backend.Snapshot().Machines); n != 5 {
		t.Fatalf("state has %d machines, want all 5 (3 being removed)", n)
	}
	d.err = nil
	rep, err = f.engine.Apply(ctx, testPlan(1, 1))
	if err != nil || rep.Deleted != 3 {
		t.Fatalf("rerun: %+v %v", rep, err)
	}
	if len(d.calls) != 2 || len(d.calls[1]) != 3 {
		t.Errorf("Delete calls %v: want the 3 workers in one call, twice", d.calls)
	}
}
