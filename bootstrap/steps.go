package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/provisionhq/provision/bootstrap/cluster"
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
// first error stops the run. A step cut off by a lost connection
// (cluster.ErrConnectionLost) is not retried here, where the connection
// cannot be made again: the caller reconnects and runs the steps again, and
// the checks skip what is done.
func RunSteps(ctx context.Context, h *Host, steps []Step) error {
	logger := h.logger()
	for _, s := range steps {
		start := time.Now()
		done, err := s.Check(ctx, h)
		if err != nil {
			cutOff(logger, h, s, err)
			return fmt.Errorf("%s: step %s: check: %w", h.Name, s.Name, err)
		}
		if done {
			logger.Info("step skipped", "machine", h.Name, "step", s.Name, "reason", "already done")
			continue
		}
		// Said before the work, so a step that never ends shows which.
		logger.Info("step applying", "machine", h.Name, "step", s.Name)
		if err := s.Apply(ctx, h); err != nil {
			cutOff(logger, h, s, err)
			return fmt.Errorf("%s: step %s: %w", h.Name, s.Name, err)
		}
		done, err = s.Check(ctx, h)
		if err != nil {
			cutOff(logger, h, s, err)
			return fmt.Errorf("%s: step %s: check after apply: %w", h.Name, s.Name, err)
		}
		if !done {
			return fmt.Errorf("%s: step %s: %w", h.Name, s.Name, ErrStepNotDone)
		}
		logger.Info("step applied", "machine", h.Name, "step", s.Name, "duration", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// cutOff says which step a lost connection interrupted.
func cutOff(logger *slog.Logger, h *Host, s Step, err error) {
	if errors.Is(err, cluster.ErrConnectionLost) {
		logger.Warn("step cut off: ssh connection lost", "machine", h.Name, "step", s.Name)
	}
}

func (h *Host) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}
