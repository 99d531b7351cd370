package apply

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/provisionhq/provision/bootstrap/cluster"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/state"
)

// remove drains and deletes machines: workers first, then managers. The
// machines of a group drain concurrently, each leaving the cluster before
// anything deletes it; then the drained ones are deleted with one provider
// Delete per provider and pool, however many machines, as Destroy does
// (a cloud with a batch call ends them in one request).
func (r *run) remove(ctx context.Context, ms []state.Machine, t Timeouts) error {
	if len(ms) == 0 {
		return nil
	}
	primary := r.survivingPrimary(ms)
	var errs []error
	for _, group := range [][]state.Machine{roleOf(ms, false), roleOf(ms, true)} {
		var (
			mu      sync.Mutex
			drained []state.Machine
			g       errgroup.Group
		)
		g.SetLimit(r.e.parallelism())
		for _, m := range group {
			g.Go(func() error {
				err := r.drain(ctx, m, primary, t)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				} else {
					drained = append(drained, m)
				}
				return nil
			})
		}
		_ = g.Wait()
		errs = append(errs, r.deleteDrained(ctx, drained, t)...)
	}
	return errorsOf(errs)
}

func roleOf(ms []state.Machine, managers bool) []state.Machine {
	var out []state.Machine
	for _, m := range ms {
		if (m.Role == string(providers.RoleManager)) == managers {
			out = append(out, m)
		}
	}
	return out
}

// survivingPrimary is the manager that drains the others, or "" when every
// joined manager is going away (then there is no cluster left to drain into).
func (r *run) survivingPrimary(removing []state.Machine) string {
	gone := map[string]bool{}
	for _, m := range removing {
		gone[m.ID] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.st.Machines {
		if m.Role == string(providers.RoleManager) && m.Phase == state.PhaseJoined && !gone[m.ID] {
			if pm := r.st.PrimaryManager(); pm != nil && !gone[pm.ID] {
				return pm.ID
			}
			return m.ID
		}
	}
	return ""
}

// drain marks a machine as being removed and takes it out of the cluster:
// it leaves by itself when it still answers; a dead one is only removed
// from the member list.
func (r *run) drain(ctx context.Context, m state.Machine, primary string, t Timeouts) error {
	ctx, cancel := context.WithTimeout(ctx, t.Remove)
	defer cancel()
	wasJoined := m.Phase == state.PhaseJoined || m.Phase == state.PhaseRemoving
	if err := r.update(ctx, m.ID, func(m *state.Machine) { m.Phase = state.PhaseRemoving }); err != nil {
		return err
	}
	if wasJoined && primary != "" {
		fail := func(err error) error {
			r.emit(Event{Machine: m.ID, Pool: m.Pool, Stage: StageDrain, Status: StatusFail, Err: err.Error()})
			return &MachineError{Machine: m.ID, Pool: m.Pool, Stage: string(StageDrain), Err: err}
		}
		r.emit(Event{Machine: m.ID, Pool: m.Pool, Stage: StageDrain, Status: StatusStart})
		mnode, err := r.managerNode(ctx, primary)
		if err != nil {
			return fail(err)
		}
		node := cluster.Node{Name: m.ID, Address: nodeAddress(m), Role: m.Role}
		dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
		if c, err := r.conn(dctx, m); err == nil {
			node.Run = c
		} else {
			r.log.Warn("machine does not answer; removing it from the cluster without leave", "machine", m.ID, "err", err)
		}
		dcancel()
		if err := r.e.Driver.Remove(ctx, mnode, node); err != nil {
			return fail(err)
		}
		r.emit(Event{Machine: m.ID, Pool: m.Pool, Stage: StageDrain, Status: StatusDone})
	}
	r.dropConn(m.ID)
	return nil
}

// deleteDrained deletes drained machines with one provider Delete per
// provider and pool (the pools concurrently), and forgets each batch that
// its provider deleted. A failed batch fails each of its machines, which
// stay in state as being removed, for the next run to delete.
func (r *run) deleteDrained(ctx context.Context, ms []state.Machine, t Timeouts) []error {
	type key struct{ provider, pool string }
	batches := map[key][]state.Machine{}
	for _, m := range ms {
		k := key{m.Provider, m.Pool}
		batches[k] = append(batches[k], m)
	}
	var (
		mu   sync.Mutex
		errs []error
		g    errgroup.Group
	)
	for k, batch := range batches {
		sort.Slice(batch, func(i, j int) bool { return batch[i].ID < batch[j].ID })
		g.Go(func() error {
			if err := r.deleteBatch(ctx, k.provider, k.pool, batch, t); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errs
}

func (r *run) deleteBatch(ctx context.Context, provider, pool string, ms []state.Machine, t Timeouts) error {
	ids := make([]providers.MachineID, len(ms))
	for i, m := range ms {
		ids[i] = providers.MachineID(m.ID)
		r.emit(Event{Machine: m.ID, Pool: pool, Stage: StageDelete, Status: StatusStart, Detail: provider})
	}
	ctx, cancel := context.WithTimeout(ctx, t.Remove)
	defer cancel()
	p, err := r.provider(ctx, provider)
	if err == nil {
		err = p.Delete(ctx, ids)
	}
	if err != nil {
		for _, m := range ms {
			r.emit(Event{Machine: m.ID, Pool: pool, Stage: StageDelete, Status: StatusFail, Err: err.Error()})
		}
		return &MachineError{Machine: machineList(ms), Pool: pool, Stage: string(StageDelete),
			Err: fmt.Errorf("delete %d machines on %s: %w", len(ms), provider, err)}
	}
	r.mu.Lock()
	for _, m := range ms {
		r.st.Remove(m.ID)
	}
	r.report.Deleted += len(ms)
	err = r.saveLocked(ctx)
	r.mu.Unlock()
	for _, m := range ms {
		r.emit(Event{Machine: m.ID, Pool: pool, Stage: StageDelete, Status: StatusDone})
	}
	return err
}

// machineList names machines in an error: the first few, then a count.
func machineList(ms []state.Machine) string {
	const show = 3
	s := ""
	for i, m := range ms {
		if i == show {
			return fmt.Sprintf("%s and %d more", s, len(ms)-show)
		}
		if i > 0 {
			s += ", "
		}
		s += m.ID
	}
	return s
}
