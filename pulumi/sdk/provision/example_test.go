// The SDK's other files are generated (make pulumi-sdk); this one is not:
// the examples below show up in its documentation.
package provision_test

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/provisionhq/provision/pulumi/sdk/provision"
)

// A Docker Swarm of one manager and two workers, each a container on this
// machine. Without ssh.privateKey the provider generates the login key and
// returns it only as the secret privateKey output.
func ExampleNewCluster() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		cluster, err := provision.NewCluster(ctx, "edge", &provision.ClusterArgs{
			Ssh: &provision.SshArgs{User: pulumi.String("root")},
			Pools: provision.PoolArray{
				provision.PoolArgs{Name: pulumi.String("managers"), Provider: pulumi.String("docker"),
					Role: pulumi.String("manager"), Count: pulumi.Int(1)},
				provision.PoolArgs{Name: pulumi.String("workers"), Provider: pulumi.String("docker"), Count: pulumi.Int(2)},
			},
		})
		if err != nil {
			return err
		}
		ctx.Export("managerAddress", cluster.ManagerAddress)
		ctx.Export("privateKey", cluster.PrivateKey)
		return nil
	})
}

// A Kubernetes cluster is kind kubeadm; its managers are the control-plane
// nodes, and its admin kubeconfig is a secret output for a Kubernetes
// provider or an export.
func ExampleNewCluster_kubeadm() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		k8s, err := provision.NewCluster(ctx, "k8s", &provision.ClusterArgs{
			Kind:       pulumi.String("kubeadm"),
			Kubernetes: &provision.KubernetesArgs{Version: pulumi.String("v1.37.2")},
			Pools: provision.PoolArray{
				provision.PoolArgs{Name: pulumi.String("control"), Provider: pulumi.String("docker"),
					Role: pulumi.String("manager"), Count: pulumi.Int(1)},
				provision.PoolArgs{Name: pulumi.String("workers"), Provider: pulumi.String("docker"), Count: pulumi.Int(2)},
			},
		})
		if err != nil {
			return err
		}
		ctx.Export("kubeconfig", k8s.Kubeconfig)
		return nil
	})
}
