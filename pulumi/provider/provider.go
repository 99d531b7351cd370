// Package provider is provision's native Pulumi provider. Its one resource,
// provision:index:Cluster (a Docker Swarm or a kubeadm Kubernetes cluster),
// takes the same model as plan.yaml and drives the same apply engine as
// `provision up` and `provision down`; the machines' state document lives
// in the resource's outputs, so the Pulumi stack is the only record of the
// cluster.
package provider

import (
	"fmt"
	"os"
	"path/filepath"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/builtin"
)

// Name is the Pulumi package name: resource tokens are "provision:…" and the
// plugin binary is pulumi-resource-provision.
const Name = "provision"

// Options tune the provider; the zero value is what the plugin binary runs.
type Options struct {
	// CacheDir holds one directory per cluster for the files providers keep
	// (the static provider's host assignments). Default:
	// os.UserCacheDir()/provision/pulumi-clusters.
	CacheDir string
	// Registry builds the providers a cluster's pools name; default the
	// built-in set (docker, static, aws, gcp, openstack).
	Registry func() *providers.Registry
}

// New builds the provider.
func New(opts Options) (p.Provider, error) {
	if opts.CacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return p.Provider{}, fmt.Errorf("pulumi provider cache directory: %w", err)
		}
		opts.CacheDir = filepath.Join(dir, "provision", "pulumi-clusters")
	}
	if opts.Registry == nil {
		opts.Registry = builtin.Registry
	}
	return infer.NewProviderBuilder().
		WithDisplayName("provision").
		WithDescription("Clusters of container hosts on any mix of clouds, bootstrapped over SSH and joined into a Docker Swarm or a Kubernetes cluster (kubeadm).").
		WithKeywords("swarm", "docker", "kubernetes", "kubeadm", "ssh", "provisioning").
		WithRepository("https://github.com/provisionhq/provision").
		WithGoImportPath("github.com/provisionhq/provision/pulumi/sdk/provision").
		WithResources(infer.Resource(&Cluster{cacheDir: opts.CacheDir, registry: opts.Registry})).
		Build()
}
