package bootstrap

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Step is one idempotent piece of bootstrap. Check reports whether the work
// is already done (so a rerun skips it); Apply does it.
type Step struct {
	Name  string
	Check func(ctx context.Context, h *Host) (done bool, err error)
	Apply func(ctx context.Context, h *Host) error
}

// RunSteps runs steps in order on h: each is skipped when its Check passes,
// else applied and checked again (ErrStepNotDone when it still fails). The
// first error stops the run.
func RunSteps(ctx context.Context, h *Host, steps []Step) error {
	logger := h.logger()
	for _, s := range steps {
		start := time.Now()
		done, err := s.Check(ctx, h)
		if err != nil {
			return fmt.Errorf("%s: step %s: check: %w", h.Name, s.Name, err)
		}
		if done {
			logger.Info("step skipped", "machine", h.Name, "step", s.Name, "reason", "already done")
			continue
		}
		if err := s.Apply(ctx, h); err != nil {
			return fmt.Errorf("%s: step %s: %w", h.Name, s.Name, err)
		}
		done, err = s.Check(ctx, h)
		if err != nil {
			return fmt.Errorf("%s: step %s: check after apply: %w", h.Name, s.Name, err)
		}
		if !done {
			return fmt.Errorf("%s: step %s: %w", h.Name, s.Name, ErrStepNotDone)
		}
		logger.Info("step applied", "machine", h.Name, "step", s.Name, "duration", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func (h *Host) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}
