package apply

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers"
)

// Destroy deletes every machine of the cluster, in state or found by tag,
// and then the state itself. There is no drain: nothing remains to drain
// into. On failure the state keeps what is left, so a rerun finishes it.
func (e *Engine) Destroy(ctx context.Context, p *plans.Plan) (*Report, error) {
	start := time.Now()
	r, unlock, err := e.begin(ctx, p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, name := range r.providerNames() {
		prov, err := r.provider(ctx, name)
		if err != nil {
			return &r.report, err
		}
		found, err := prov.List(ctx, providers.Selector{Cluster: r.st.Cluster})
		if err != nil {
			return &r.report, fmt.Errorf("list machines on %s: %w", name, err)
		}
		set := map[providers.MachineID]string{}
		for _, m := range found {
			set[m.ID] = m.Pool
		}
		for _, m := range r.st.Machines {
			if m.Provider == name {
				set[providers.MachineID(m.ID)] = m.Pool
			}
		}
		ids := make([]providers.MachineID, 0, len(set))
		for id := range set {
			ids = append(ids, id)
			r.emit(Event{Machine: string(id), Pool: set[id], Stage: StageDelete, Status: StatusStart, Detail: name})
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		if len(ids) == 0 {
			continue
		}
		if err := prov.Delete(ctx, ids); err != nil {
			for _, id := range ids {
				r.emit(Event{Machine: string(id), Pool: set[id], Stage: StageDelete, Status: StatusFail, Err: err.Error()})
			}
			return &r.report, fmt.Errorf("delete %d machines on %s: %w", len(ids), name, err)
		}
		r.mu.Lock()
		for _, id := range ids {
			r.st.Remove(string(id))
			r.emit(Event{Machine: string(id), Pool: set[id], Stage: StageDelete, Status: StatusDone})
		}
		r.report.Deleted += len(ids)
		err = r.saveLocked(ctx)
		r.mu.Unlock()
		if err != nil {
			return &r.report, err
		}
	}
	r.closeConns()
	if err := e.Backend.Destroy(context.WithoutCancel(ctx)); err != nil {
		return &r.report, fmt.Errorf("remove state: %w", err)
	}
	r.report.Duration = time.Since(start)
	return &r.report, nil
}
