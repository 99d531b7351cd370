// Command pulumisecrets is the Pulumi program of e2e's TestSecretsSweep: a
// swarm of one AWS manager and one OpenStack worker (cloudsim answers for
// both clouds), logging in with the key in the file that the keyFile config
// names. The key goes to the provider as a plain string, not a Pulumi
// secret, as a program that reads a key file may well do: the provider must
// keep it secret by itself. The exports include the cluster's ssh block and
// secret outputs, so that the stack's own outputs are swept too.
package main

import (
	"cmp"
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/provisionhq/provision/pulumi/sdk/provision"
)

func main() { pulumi.Run(program) }

func program(ctx *pulumi.Context) error {
	cfg := config.New(ctx, "")
	key, err := os.ReadFile(cfg.Require("keyFile"))
	if err != nil {
		return fmt.Errorf("config keyFile: %w", err)
	}
	cluster, err := provision.NewCluster(ctx, "sweep", &provision.ClusterArgs{
		Name: pulumi.String(cfg.Require("clusterName")),
		Ssh:  &provision.SshArgs{User: pulumi.String("admin"), PrivateKey: pulumi.String(string(key))},
		Pools: provision.PoolArray{
			provision.PoolArgs{
				Name:     pulumi.String("managers"),
				Provider: pulumi.String("aws"),
				Role:     pulumi.String("manager"),
				Count:    pulumi.Int(1),
				Settings: pulumi.Map{"instance_type": pulumi.String("t3.medium"), "ami": pulumi.String("ami-0d1e2b3c4a5f60718")},
			},
			provision.PoolArgs{
				Name:     pulumi.String("os-workers"),
				Provider: pulumi.String("openstack"),
				Count:    pulumi.Int(1),
				Labels:   pulumi.StringMap{"tier": pulumi.String(cmp.Or(cfg.Get("tier"), "a"))},
				Settings: pulumi.Map{"flavor": pulumi.String("m1.small"), "image": pulumi.String("debian-12")},
			},
		},
	})
	if err != nil {
		return err
	}
	ctx.Export("managerAddress", cluster.ManagerAddress)
	ctx.Export("publicKey", cluster.PublicKey)
	ctx.Export("ssh", cluster.Ssh)
	ctx.Export("privateKey", cluster.PrivateKey)
	ctx.Export("workerJoinToken", cluster.WorkerJoinToken)
	ctx.Export("managerJoinToken", cluster.ManagerJoinToken)
	return nil
}
