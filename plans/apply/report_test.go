package apply

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/provisionhq/provision/providers"
)

// TestReportCountsFailedMachines: a run whose machines failed says which,
// at which stage, and does not count them as created.
func TestReportCountsFailedMachines(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var (
		mu      sync.Mutex
		badOnes []string
	)
	f.prov.createErr["spares"] = &providers.Error{Kind: providers.ErrCapacity, Cloud: "fake", Pool: "spares", Code: "InsufficientInstanceCapacity"}
	f.prepErr = func(id string) error {
		mu.Lock()
		defer mu.Unlock()
		// The first worker to reach its runtime install fails it.
		if strings.Contains(id, "workers") && (len(badOnes) == 0 || badOnes[0] == id) {
			if len(badOnes) == 0 {
				badOnes = append(badOnes, id)
			}
			return errors.New("apt-get: exit 100")
		}
		return nil
	}
	p := testPlan(1, 3)
	p.Pools = append(p.Pools, p.Pools[1])
	p.Pools[2].Name, p.Pools[2].Count = "spares", 1
	rep, err := f.engine.Apply(t.Context(), p)
	if err == nil {
		t.Fatal("Apply succeeded with failed machines")
	}
	if rep.Created != 3 {
		t.Errorf("Created = %d, want 3 (the manager and two workers; the failed worker and the spare are not)", rep.Created)
	}
	got := make([]string, 0, len(rep.Failed))
	for _, fl := range rep.Failed {
		got = append(got, fl.Pool+"/"+string(fl.Stage))
		if fl.Machine == "" || fl.Err == "" {
			t.Errorf("failure %+v names no machine or error", fl)
		}
	}
	if want := []string{"spares/create", "workers/runtime"}; !slices.Equal(got, want) {
		t.Errorf("Failed = %v, want %v", got, want)
	}
	if len(rep.Failed) == 2 && rep.Failed[1].Machine != badOnes[0] {
		t.Errorf("Failed names %s, the worker that failed is %s", rep.Failed[1].Machine, badOnes[0])
	}
}
