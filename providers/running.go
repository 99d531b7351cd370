package providers

import "context"

type runningKey struct{}

// WithRunning returns a context under which a provider's Create reports
// each machine the moment it runs with an address, before the rest of its
// batch: the engine starts that machine's bootstrap at once instead of
// waiting for the slowest machine of the batch. f may be called from any
// goroutine, and more than once for one machine.
func WithRunning(ctx context.Context, f func(Machine)) context.Context {
	return context.WithValue(ctx, runningKey{}, f)
}

// Running tells the caller of Create (see WithRunning) that m runs and has
// its address. Create still returns every machine it made; reporting is an
// early notice, not a substitute, so a provider that never calls Running
// is correct, only slower to start bootstraps.
func Running(ctx context.Context, m Machine) {
	if f, ok := ctx.Value(runningKey{}).(func(Machine)); ok && m.State == StateRunning && m.Address != "" {
		f(m)
	}
}
