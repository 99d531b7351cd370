package apply

import (
	"context"

	"github.com/provisionhq/provision/plans"
)

// Actuator is the autoscaler's way to act (autoscaler.Actuator): it resizes
// pools through the engine, in the same run as up, so nothing else creates
// or deletes machines.
type Actuator struct {
	Engine *Engine
}

// Resize converges the autoscaled pools to sizes, giving up the drained
// machines in remove first.
func (a Actuator) Resize(ctx context.Context, p *plans.Plan, sizes map[string]int, remove []string) error {
	_, err := a.Engine.Resize(ctx, p, Resize{Sizes: sizes, Remove: remove})
	return err
}
