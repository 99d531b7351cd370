// Command pulumi is a Pulumi program that creates a local Docker Swarm with
// provision: one manager and two workers, each a container on this machine
// with sshd and its own Docker engine, so no cloud account is needed. It is
// the Pulumi twin of examples/local.yaml.
//
//	pulumi stack init dev
//	pulumi up                         # needs pulumi-resource-provision on PATH
//	pulumi config set workers 3 && pulumi up
//	pulumi stack output managerAddress
//	pulumi stack output privateKey --show-secrets > key && chmod 600 key
//	pulumi destroy
package main

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/provisionhq/provision/pulumi/sdk/provision"
)

func main() { pulumi.Run(program) }

// program declares the cluster and exports how to reach it.
func program(ctx *pulumi.Context) error {
	cfg := config.New(ctx, "")
	name := cfg.Get("clusterName")
	if name == "" {
		name = "pulumi-local"
	}
	workers, err := cfg.TryInt("workers")
	switch {
	case errors.Is(err, config.ErrMissingVar):
		workers = 2
	case err != nil:
		return fmt.Errorf("config workers: %w", err)
	}

	cluster, err := provision.NewCluster(ctx, "local", &provision.ClusterArgs{
		Name: pulumi.String(name),
		// No private key: the provider generates one and keeps it only in
		// the secret privateKey output.
		Ssh: &provision.SshArgs{User: pulumi.String("root")},
		Pools: provision.PoolArray{
			provision.PoolArgs{
				Name:     pulumi.String("managers"),
				Provider: pulumi.String("docker"),
				Role:     pulumi.String("manager"),
				Count:    pulumi.Int(1),
			},
			provision.PoolArgs{
				Name:     pulumi.String("workers"),
				Provider: pulumi.String("docker"),
				Count:    pulumi.Int(workers),
				Labels:   pulumi.StringMap{"tier": pulumi.String("general")},
			},
		},
	})
	if err != nil {
		return err
	}
	ctx.Export("managerAddress", cluster.ManagerAddress)
	ctx.Export("nodes", cluster.Nodes)
	ctx.Export("privateKey", cluster.PrivateKey)
	return nil
}
