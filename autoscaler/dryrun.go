package autoscaler

import (
	"context"
	"log/slog"

	"github.com/provisionhq/provision/plans"
)

// DryRun is the Actuator of a dry run: it logs what it would resize and
// changes nothing.
type DryRun struct {
	Log *slog.Logger
}

// Resize logs the decision.
func (d DryRun) Resize(_ context.Context, _ *plans.Plan, sizes map[string]int, remove []string) error {
	d.Log.Info("dry run: would resize", "sizes", sizes, "remove", remove)
	return nil
}
