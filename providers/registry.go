package providers

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
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
	// HTTPClient, when set, carries every API request of a cloud provider
	// in place of its SDK's own client: for an emulator served in the same
	// process (internal/scalebench's EC2 in virtual time, where a real
	// socket would stop the clock). Nil in every command.
	HTTPClient *http.Client
}

// Factory builds a provider.
type Factory func(ctx context.Context, env Env) (Provider, error)

// Entry is one registered provider: how to build it, and how to check a
// pool's settings for it without building it (no credentials, no network).
type Entry struct {
	New Factory
	// Check is the provider's static settings check; nil accepts any
	// settings (test fakes).
	Check Check
	// Spot says the provider honours MachineSpec.Spot; a plan asking for
	// spot on a provider without it is invalid.
	Spot bool
}

// Registry maps provider names to entries. Programs that embed provision
// build their own with NewRegistry, so nothing depends on init() order; the
// built-in set is providers/builtin.Registry().
type Registry struct {
	entries map[string]Entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{entries: map[string]Entry{}} }

// Register adds a provider. It panics on an empty or duplicate name or a nil
// factory: all are programming errors that must fail at start-up.
func (r *Registry) Register(name string, e Entry) {
	if name == "" || e.New == nil {
		panic("providers: Register with empty name or nil factory")
	}
	if _, dup := r.entries[name]; dup {
		panic(fmt.Sprintf("providers: %q registered twice", name))
	}
	r.entries[name] = e
}

// CheckSettings runs the named provider's static settings check. An unknown
// name has nothing to check (the caller reports the name itself).
func (r *Registry) CheckSettings(name string, s Settings) []SettingError {
	e, ok := r.entries[name]
	if !ok || e.Check == nil {
		return nil
	}
	return e.Check(s)
}

// Spot reports whether the named provider offers spot capacity.
func (r *Registry) Spot(name string) bool { return r.entries[name].Spot }

// Has reports whether a provider of that name is registered.
func (r *Registry) Has(name string) bool { _, ok := r.entries[name]; return ok }

// Names lists the registered providers, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.entries))
	for n := range r.entries {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New builds the named provider.
func (r *Registry) New(ctx context.Context, name string, env Env) (Provider, error) {
	e, ok := r.entries[name]
	if !ok {
		return nil, fmt.Errorf("unknown provider %q (known: %v)", name, r.Names())
	}
	p, err := e.New(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", name, err)
	}
	return p, nil
}
