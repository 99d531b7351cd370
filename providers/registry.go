package providers

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
)

// Env is what a provider is constructed with. Credentials are not here: each
// provider reads its cloud's standard credential chain.
type Env struct {
	Cluster string
	// Dir is a directory the provider may keep files in (caches, keys).
	Dir    string
	Logger *slog.Logger
	// Pools holds the settings of every plan pool on this provider, by
	// pool name, so List and Delete in a fresh process (a `down`) know which
	// regions, zones or projects to look in.
	Pools map[string]Settings
}

// Factory builds a provider.
type Factory func(ctx context.Context, env Env) (Provider, error)

// Registry maps provider names to factories. Programs that embed provision
// build their own with NewRegistry, so nothing depends on init() order; the
// built-in set is providers/builtin.Registry().
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Register adds a provider. It panics on an empty or duplicate name: both are
// programming errors that must fail at start-up.
func (r *Registry) Register(name string, f Factory) {
	if name == "" || f == nil {
		panic("providers: Register with empty name or nil factory")
	}
	if _, dup := r.factories[name]; dup {
		panic(fmt.Sprintf("providers: %q registered twice", name))
	}
	r.factories[name] = f
}

// Has reports whether a provider of that name is registered.
func (r *Registry) Has(name string) bool { _, ok := r.factories[name]; return ok }

// Names lists the registered providers, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.factories))
	for n := range r.factories {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New builds the named provider.
func (r *Registry) New(ctx context.Context, name string, env Env) (Provider, error) {
	f, ok := r.factories[name]
	if !ok {
		return nil, fmt.Errorf("unknown provider %q (known: %v)", name, r.Names())
	}
	p, err := f(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", name, err)
	}
	return p, nil
}
