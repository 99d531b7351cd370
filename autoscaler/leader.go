package autoscaler

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Elector is leader election among autoscaler replicas (etcd.Elector).
type Elector interface {
	// Campaign blocks until this replica leads and returns a context that
	// is cancelled when leadership is lost, and a func that gives it up.
	Campaign(ctx context.Context, identity string) (lead context.Context, resign func(), err error)
	// IsLeader asks the election, not a cached belief, whether this
	// replica still leads.
	IsLeader(ctx context.Context) (bool, error)
}

// Lead runs the loop whenever this replica leads, and stands by otherwise,
// until ctx is done. A lost lease cancels the loop mid-pass; the engine
// leaves a resumable state, which the next leader picks up. Before every
// change the loop asks the election again (a fence), so a replica that was
// deposed without noticing yet does not act.
func Lead(ctx context.Context, el Elector, identity string, loop *Loop, m *Metrics, log *slog.Logger) error {
	loop.Fence = func(ctx context.Context) error {
		lead, err := el.IsLeader(ctx)
		if err == nil && !lead {
			err = errors.New("this replica is no longer the leader")
		}
		return err
	}
	for {
		log.Info("autoscaler standing by for leadership", "identity", identity)
		lead, resign, err := el.Campaign(ctx, identity)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn("leader election failed, retrying", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		log.Info("autoscaler leading", "identity", identity)
		m.SetLeader(true)
		err = loop.Run(lead)
		m.SetLeader(false)
		resign()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("autoscaler lost leadership", "identity", identity, "err", err)
	}
}
