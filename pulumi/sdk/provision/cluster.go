// Package provision is the Go SDK of provision's Pulumi provider: Pulumi
// programs import it to declare clusters.
//
//	cluster, err := provision.NewCluster(ctx, "edge", &provision.ClusterArgs{
//		Pools: provision.PoolArray{
//			provision.PoolArgs{Name: pulumi.String("managers"), Provider: pulumi.String("docker"),
//				Role: pulumi.String("manager"), Count: pulumi.Int(1)},
//			provision.PoolArgs{Name: pulumi.String("workers"), Provider: pulumi.String("docker"), Count: pulumi.Int(2)},
//		},
//	})
//	ctx.Export("managerAddress", cluster.ManagerAddress)
//
// A Kubernetes cluster is kind kubeadm; its admin kubeconfig is a secret
// output, for a Kubernetes provider or an export:
//
//	k8s, err := provision.NewCluster(ctx, "k8s", &provision.ClusterArgs{
//		Kind:       pulumi.String("kubeadm"),
//		Kubernetes: &provision.KubernetesArgs{Version: pulumi.String("v1.37.2")},
//		Pools: provision.PoolArray{ /* managers are control-plane nodes */ },
//	})
//	ctx.Export("kubeconfig", k8s.Kubeconfig)
//
// It is written by hand in the shape `pulumi package gen-sdk` gives Go SDKs
// (Args structs of Inputs, Output types with accessors), against the schema
// in cmd/pulumi-resource-provision/schema.json. The resource's lifecycle
// runs in the provider plugin, pulumi-resource-provision.
package provision

import (
	"errors"
	"reflect"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ClusterType is the resource's token.
const ClusterType = "provision:index:Cluster"

// secretOutputs are the outputs that are always secret.
var secretOutputs = []string{"privateKey", "workerJoinToken", "managerJoinToken", "kubeconfig"}

// Cluster is a cluster of container hosts: machines from one or more
// providers, bootstrapped over SSH and joined into a Docker Swarm or, with
// kind kubeadm, a Kubernetes cluster.
type Cluster struct {
	pulumi.CustomResourceState

	// Name is the cluster's name (default: the resource's name).
	Name pulumi.StringOutput `pulumi:"name"`
	// Kind is the cluster kind: swarm or kubeadm.
	Kind pulumi.StringOutput `pulumi:"kind"`
	// SSH is how provision logs in, defaults filled in.
	SSH SSHPtrOutput `pulumi:"ssh"`
	// Kubernetes is a kubeadm cluster's settings, defaults filled in (nil
	// for a swarm).
	Kubernetes KubernetesPtrOutput `pulumi:"kubernetes"`
	// Pools are the cluster's pools, defaults filled in.
	Pools PoolArrayOutput `pulumi:"pools"`
	// Nodes are the cluster's machines.
	Nodes NodeArrayOutput `pulumi:"nodes"`
	// ManagerAddress is the primary manager's address.
	ManagerAddress pulumi.StringOutput `pulumi:"managerAddress"`
	// PublicKey is the login key's public half (authorized_keys form).
	PublicKey pulumi.StringOutput `pulumi:"publicKey"`
	// PrivateKey is the login key (secret): ssh.privateKey, or the key the
	// provider generated.
	PrivateKey pulumi.StringOutput `pulumi:"privateKey"`
	// WorkerJoinToken and ManagerJoinToken are the swarm's join tokens
	// (secret; empty for kubeadm).
	WorkerJoinToken  pulumi.StringOutput `pulumi:"workerJoinToken"`
	ManagerJoinToken pulumi.StringOutput `pulumi:"managerJoinToken"`
	// Kubeconfig is a kubeadm cluster's admin kubeconfig (secret; empty
	// for a swarm): give it to a Kubernetes provider.
	Kubeconfig pulumi.StringPtrOutput `pulumi:"kubeconfig"`
	// State is provision's state document (JSON, no secrets).
	State pulumi.StringOutput `pulumi:"state"`
}

// ClusterArgs are a Cluster's inputs: the model of plan.yaml.
type ClusterArgs struct {
	// Name of the cluster: lowercase letters, digits and "-". Default: the
	// resource's name.
	Name pulumi.StringPtrInput
	// Kind of cluster: swarm (the default) or kubeadm (Kubernetes).
	Kind pulumi.StringPtrInput
	// SSH says how provision logs in; optional.
	SSH SSHPtrInput
	// Kubernetes configures a kubeadm cluster; optional.
	Kubernetes KubernetesPtrInput
	// Pools of identical machines; required.
	Pools PoolArrayInput
}

// clusterArgs is ClusterArgs resolved: what goes on the wire.
type clusterArgs struct {
	Name       *string     `pulumi:"name"`
	Kind       *string     `pulumi:"kind"`
	SSH        *SSH        `pulumi:"ssh"`
	Kubernetes *Kubernetes `pulumi:"kubernetes"`
	Pools      []Pool      `pulumi:"pools"`
}

// ElementType implements pulumi.Input.
func (ClusterArgs) ElementType() reflect.Type { return reflect.TypeOf((*clusterArgs)(nil)).Elem() }

// NewCluster registers a Cluster: `pulumi up` creates or updates it through
// the provider plugin, `pulumi destroy` deletes its machines.
func NewCluster(ctx *pulumi.Context, name string, args *ClusterArgs, opts ...pulumi.ResourceOption) (*Cluster, error) {
	if args == nil || args.Pools == nil {
		return nil, errors.New("provision.NewCluster: missing required argument Pools")
	}
	a := *args
	a.SSH = secretKey(a.SSH)
	// The engine encrypts these outputs in the stack's state.
	opts = append(opts, pulumi.AdditionalSecretOutputs(secretOutputs))
	var c Cluster
	if err := ctx.RegisterResource(ClusterType, name, &a, &c, opts...); err != nil {
		return nil, err
	}
	// And the program sees them as secrets whatever the resource monitor
	// does with the option (mocks ignore it), so an export stays secret.
	c.PrivateKey = secretString(c.PrivateKey)
	c.WorkerJoinToken = secretString(c.WorkerJoinToken)
	c.ManagerJoinToken = secretString(c.ManagerJoinToken)
	c.Kubeconfig = pulumi.ToSecret(c.Kubeconfig).(pulumi.StringPtrOutput)
	return &c, nil
}

func secretString(o pulumi.StringOutput) pulumi.StringOutput {
	return pulumi.ToSecret(o).(pulumi.StringOutput)
}

// secretKey marks ssh.privateKey secret before it leaves the program, as
// generated SDKs do for secret inputs. It copies rather than change the
// caller's args.
func secretKey(in SSHPtrInput) SSHPtrInput {
	var s SSHArgs
	switch v := in.(type) {
	case SSHArgs:
		s = v
	case *SSHArgs:
		if v == nil {
			return in
		}
		s = *v
	default:
		return in // an Output: its secretness is already decided upstream
	}
	if s.PrivateKey == nil {
		return in
	}
	if secret, ok := pulumi.ToSecret(s.PrivateKey).(pulumi.StringPtrInput); ok {
		s.PrivateKey = secret
	}
	return &s
}
