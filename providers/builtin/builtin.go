// Package builtin owns the list of providers compiled into provision. It
// builds an explicit registry, so programs that embed provision (Pulumi)
// depend on no init() side effects.
package builtin

import (
	"context"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/aws"
	"github.com/provisionhq/provision/providers/docker"
	"github.com/provisionhq/provision/providers/gcp"
	"github.com/provisionhq/provision/providers/openstack"
	"github.com/provisionhq/provision/providers/static"
)

// Registry returns a new registry holding every built-in provider, each
// with its static settings check.
func Registry() *providers.Registry {
	r := providers.NewRegistry()
	r.Register("aws", providers.Entry{
		New: func(ctx context.Context, env providers.Env) (providers.Provider, error) {
			return aws.New(ctx, env)
		},
		Check: aws.CheckSettings,
		Spot:  true, // RunInstances InstanceMarketOptions
	})
	r.Register("docker", providers.Entry{
		New: func(ctx context.Context, env providers.Env) (providers.Provider, error) {
			return docker.New(ctx, env)
		},
		Check: docker.CheckSettings,
	})
	r.Register("gcp", providers.Entry{
		New: func(ctx context.Context, env providers.Env) (providers.Provider, error) {
			return gcp.New(ctx, env)
		},
		Check: gcp.CheckSettings,
		Spot:  true, // scheduling.provisioningModel SPOT
	})
	r.Register("openstack", providers.Entry{
		New: func(ctx context.Context, env providers.Env) (providers.Provider, error) {
			return openstack.New(ctx, env)
		},
		Check: openstack.CheckSettings,
	})
	r.Register("static", providers.Entry{
		New: func(ctx context.Context, env providers.Env) (providers.Provider, error) {
			return static.New(ctx, env)
		},
		Check: static.CheckSettings,
	})
	return r
}
