package apply

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/provisionhq/provision/state"
)

// managerDial bounds the wait for one manager before the next stands in.
const managerDial = 20 * time.Second

// ErrNoManager is returned when the state has no joined manager to talk to.
var ErrNoManager = errors.New("no joined manager in state: run provision up first")

// DialManager opens a session, with dial, to the first of st's joined
// managers that answers: first when it is one, else the primary, then the
// others oldest first, each tried for up to managerDial. A lost
// control-plane node must not blind provision to the cluster. Every front
// end that talks to "the manager" (the engine's joins and drains, the CLI,
// the autoscaler, the Pulumi provider) goes through here, and every one
// dials a machine's public address (state.Machine.Address), as SSH does.
func DialManager[C any](ctx context.Context, st *state.State, first string, dial func(context.Context, state.Machine) (C, error)) (C, state.Machine, error) {
	var zero C
	ids := st.ManagersFrom(first)
	if len(ids) == 0 {
		return zero, state.Machine{}, ErrNoManager
	}
	ms := make([]state.Machine, 0, len(ids))
	for _, id := range ids {
		ms = append(ms, *st.Machine(id))
	}
	return dialFirst(ctx, ms, dial)
}

// dialFirst tries ms in order; st is not read here, so callers may copy the
// machines out under their lock first.
func dialFirst[C any](ctx context.Context, ms []state.Machine, dial func(context.Context, state.Machine) (C, error)) (C, state.Machine, error) {
	var (
		zero C
		errs []error
	)
	for _, m := range ms {
		dctx, cancel := context.WithTimeout(ctx, managerDial)
		c, err := dial(dctx, m)
		cancel()
		if err == nil {
			return c, m, nil
		}
		errs = append(errs, fmt.Errorf("connect to manager %s: %w", m.ID, err))
		if ctx.Err() != nil {
			break
		}
	}
	return zero, state.Machine{}, errors.Join(errs...)
}
