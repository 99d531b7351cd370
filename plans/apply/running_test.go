package apply

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

// slowBatch is a provider whose batch has one quick machine and slow
// others: it reports the first machine running at once, then holds Create
// until release is closed, as a cloud whose last instance of a batch takes
// long to start.
type slowBatch struct {
	*fakeProvider
	release chan struct{}
	failAt  error // Create's error after release, if any
}

func (p *slowBatch) Create(ctx context.Context, specs []providers.MachineSpec) ([]providers.Machine, error) {
	ms, err := p.fakeProvider.Create(ctx, specs)
	if err != nil {
		return nil, err
	}
	providers.Running(ctx, ms[0])
	select {
	case <-p.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if p.failAt != nil {
		return nil, p.failAt
	}
	return ms, nil
}

func joined(f *fixture, id string) bool {
	f.driver.mu.Lock()
	defer f.driver.mu.Unlock()
	return slices.Contains(f.driver.calls, "join "+id)
}

// TestBootstrapStartsWhenItsMachineRuns: a machine its provider reports
// running is bootstrapped and joined while the rest of its batch is still
// being created; if the batch's Create then fails, that machine stays
// created and joined, and only the others fail.
func TestBootstrapStartsWhenItsMachineRuns(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		failAt  error
		created int
	}{
		{"batch succeeds", nil, 4},
		{"batch fails after the first machine ran", errors.New("two instances never started"), 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			slow := &slowBatch{fakeProvider: f.prov, release: make(chan struct{}), failAt: tt.failAt}
			f.engine.Providers.Register("slow", providers.Entry{New: func(context.Context, providers.Env) (providers.Provider, error) { return slow, nil }})
			plan := testPlan(1, 3)
			plan.Pools[1].Provider = "slow"

			type result struct {
				rep *Report
				err error
			}
			done := make(chan result, 1)
			go func() {
				rep, err := f.engine.Apply(context.Background(), plan)
				done <- result{rep, err}
			}()
			// The first worker joins while its batch's Create is held.
			deadline := time.Now().Add(10 * time.Second)
			var first string
			for first == "" {
				if st := f.backend.Snapshot(); st != nil {
					for _, m := range st.Machines {
						if m.Pool == "workers" && joined(f, m.ID) {
							first = m.ID
						}
					}
				}
				if time.Now().After(deadline) {
					close(slow.release)
					t.Fatalf("no worker joined while its batch was being created: driver calls %v", f.driver.calls)
				}
				time.Sleep(5 * time.Millisecond)
			}
			close(slow.release)
			res := <-done
			if (res.err != nil) != (tt.failAt != nil) {
				t.Fatalf("apply: %v", res.err)
			}
			if res.rep.Created != tt.created {
				t.Errorf("report: %d created, want %d", res.rep.Created, tt.created)
			}
			st := f.backend.Snapshot()
			if m := st.Machine(first); m == nil || m.Phase != state.PhaseJoined || m.ProviderID == "" {
				t.Errorf("early machine in state: %+v, want joined with its provider ID", m)
			}
			if n := len(f.driver.calls); tt.failAt == nil && f.driver.count("join") != 3 {
				t.Errorf("%d joins (%d driver calls), want 3", f.driver.count("join"), n)
			}
			if tt.failAt != nil && f.driver.count("join") != 1 {
				t.Errorf("%d joins after the batch failed, want only the early machine's: %v", f.driver.count("join"), f.driver.calls)
			}
		})
	}
}
