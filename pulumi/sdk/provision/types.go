package provision

import (
	"context"
	"reflect"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// The Input and Output plumbing below follows generated Pulumi Go SDKs: each
// object type has a plain struct (the resolved value), an Args struct of
// Inputs, and Output types whose accessors reach into the value.

func init() {
	pulumi.RegisterInputType(reflect.TypeOf((*SSHInput)(nil)).Elem(), SSHArgs{})
	pulumi.RegisterInputType(reflect.TypeOf((*SSHPtrInput)(nil)).Elem(), SSHArgs{})
	pulumi.RegisterInputType(reflect.TypeOf((*BastionInput)(nil)).Elem(), BastionArgs{})
	pulumi.RegisterInputType(reflect.TypeOf((*BastionPtrInput)(nil)).Elem(), BastionArgs{})
	pulumi.RegisterInputType(reflect.TypeOf((*KubernetesInput)(nil)).Elem(), KubernetesArgs{})
	pulumi.RegisterInputType(reflect.TypeOf((*KubernetesPtrInput)(nil)).Elem(), KubernetesArgs{})
	pulumi.RegisterInputType(reflect.TypeOf((*KubernetesArtifactsInput)(nil)).Elem(), KubernetesArtifactsArgs{})
	pulumi.RegisterInputType(reflect.TypeOf((*KubernetesArtifactsPtrInput)(nil)).Elem(), KubernetesArtifactsArgs{})
	pulumi.RegisterInputType(reflect.TypeOf((*PoolInput)(nil)).Elem(), PoolArgs{})
	pulumi.RegisterInputType(reflect.TypeOf((*PoolArrayInput)(nil)).Elem(), PoolArray{})
	pulumi.RegisterOutputType(SSHOutput{})
	pulumi.RegisterOutputType(SSHPtrOutput{})
	pulumi.RegisterOutputType(BastionOutput{})
	pulumi.RegisterOutputType(BastionPtrOutput{})
	pulumi.RegisterOutputType(KubernetesOutput{})
	pulumi.RegisterOutputType(KubernetesPtrOutput{})
	pulumi.RegisterOutputType(KubernetesArtifactsOutput{})
	pulumi.RegisterOutputType(KubernetesArtifactsPtrOutput{})
	pulumi.RegisterOutputType(PoolOutput{})
	pulumi.RegisterOutputType(PoolArrayOutput{})
	pulumi.RegisterOutputType(NodeOutput{})
	pulumi.RegisterOutputType(NodeArrayOutput{})
}

// ---- SSH ----

// SSH says how provision logs in to the machines.
type SSH struct {
	// User is the login user (default root).
	User *string `pulumi:"user"`
	// Port is the SSH port of machines whose provider names none (default 22).
	Port *int `pulumi:"port"`
	// PrivateKey is the login key (unencrypted, OpenSSH or PEM form); when
	// empty the provider generates one. Secret.
	PrivateKey *string `pulumi:"privateKey"`
	// Bastion is a jump host between provision and the machines.
	Bastion *Bastion `pulumi:"bastion"`
}

// SSHInput is an input of SSH: SSHArgs or SSHOutput.
type SSHInput interface {
	pulumi.Input
	ToSSHOutput() SSHOutput
	ToSSHOutputWithContext(context.Context) SSHOutput
}

// SSHArgs are SSH's inputs.
type SSHArgs struct {
	User       pulumi.StringPtrInput `pulumi:"user"`
	Port       pulumi.IntPtrInput    `pulumi:"port"`
	PrivateKey pulumi.StringPtrInput `pulumi:"privateKey"`
	Bastion    BastionPtrInput       `pulumi:"bastion"`
}

func (SSHArgs) ElementType() reflect.Type { return reflect.TypeOf((*SSH)(nil)).Elem() }

func (i SSHArgs) ToSSHOutput() SSHOutput { return i.ToSSHOutputWithContext(context.Background()) }

func (i SSHArgs) ToSSHOutputWithContext(ctx context.Context) SSHOutput {
	return pulumi.ToOutputWithContext(ctx, i).(SSHOutput)
}

func (i SSHArgs) ToSSHPtrOutput() SSHPtrOutput {
	return i.ToSSHPtrOutputWithContext(context.Background())
}

func (i SSHArgs) ToSSHPtrOutputWithContext(ctx context.Context) SSHPtrOutput {
	return i.ToSSHOutputWithContext(ctx).ToSSHPtrOutputWithContext(ctx)
}

// SSHPtrInput is an optional SSH input: &SSHArgs{…}, SSHArgs{…} or an
// SSHPtrOutput.
type SSHPtrInput interface {
	pulumi.Input
	ToSSHPtrOutput() SSHPtrOutput
	ToSSHPtrOutputWithContext(context.Context) SSHPtrOutput
}

// SSHOutput is an SSH output.
type SSHOutput struct{ *pulumi.OutputState }

func (SSHOutput) ElementType() reflect.Type { return reflect.TypeOf((*SSH)(nil)).Elem() }

func (o SSHOutput) ToSSHOutput() SSHOutput                           { return o }
func (o SSHOutput) ToSSHOutputWithContext(context.Context) SSHOutput { return o }
func (o SSHOutput) ToSSHPtrOutput() SSHPtrOutput {
	return o.ToSSHPtrOutputWithContext(context.Background())
}
func (o SSHOutput) ToSSHPtrOutputWithContext(ctx context.Context) SSHPtrOutput {
	return o.ApplyTWithContext(ctx, func(_ context.Context, v SSH) *SSH { return &v }).(SSHPtrOutput)
}

// SSHPtrOutput is an optional SSH output.
type SSHPtrOutput struct{ *pulumi.OutputState }

func (SSHPtrOutput) ElementType() reflect.Type { return reflect.TypeOf((**SSH)(nil)).Elem() }

func (o SSHPtrOutput) ToSSHPtrOutput() SSHPtrOutput                           { return o }
func (o SSHPtrOutput) ToSSHPtrOutputWithContext(context.Context) SSHPtrOutput { return o }

// User is the login user.
func (o SSHPtrOutput) User() pulumi.StringPtrOutput {
	return o.ApplyT(func(v *SSH) *string {
		if v == nil {
			return nil
		}
		return v.User
	}).(pulumi.StringPtrOutput)
}

// Port is the default SSH port.
func (o SSHPtrOutput) Port() pulumi.IntPtrOutput {
	return o.ApplyT(func(v *SSH) *int {
		if v == nil {
			return nil
		}
		return v.Port
	}).(pulumi.IntPtrOutput)
}

// ---- Bastion ----

// Bastion is a jump host; provision logs in to it with the cluster's key.
type Bastion struct {
	Host *string `pulumi:"host"`
	Port *int    `pulumi:"port"`
	User *string `pulumi:"user"`
	// HostKey is the bastion's public host key (authorized_keys form);
	// required, as provision never trusts an unknown host key.
	HostKey *string `pulumi:"hostKey"`
}

// BastionInput is an input of Bastion.
type BastionInput interface {
	pulumi.Input
	ToBastionOutput() BastionOutput
	ToBastionOutputWithContext(context.Context) BastionOutput
}

// BastionArgs are Bastion's inputs.
type BastionArgs struct {
	Host    pulumi.StringPtrInput `pulumi:"host"`
	Port    pulumi.IntPtrInput    `pulumi:"port"`
	User    pulumi.StringPtrInput `pulumi:"user"`
	HostKey pulumi.StringPtrInput `pulumi:"hostKey"`
}

func (BastionArgs) ElementType() reflect.Type { return reflect.TypeOf((*Bastion)(nil)).Elem() }

func (i BastionArgs) ToBastionOutput() BastionOutput {
	return i.ToBastionOutputWithContext(context.Background())
}

func (i BastionArgs) ToBastionOutputWithContext(ctx context.Context) BastionOutput {
	return pulumi.ToOutputWithContext(ctx, i).(BastionOutput)
}

func (i BastionArgs) ToBastionPtrOutput() BastionPtrOutput {
	return i.ToBastionPtrOutputWithContext(context.Background())
}

func (i BastionArgs) ToBastionPtrOutputWithContext(ctx context.Context) BastionPtrOutput {
	return i.ToBastionOutputWithContext(ctx).ToBastionPtrOutputWithContext(ctx)
}

// BastionPtrInput is an optional Bastion input: &BastionArgs{…}.
type BastionPtrInput interface {
	pulumi.Input
	ToBastionPtrOutput() BastionPtrOutput
	ToBastionPtrOutputWithContext(context.Context) BastionPtrOutput
}

// BastionOutput is a Bastion output.
type BastionOutput struct{ *pulumi.OutputState }

func (BastionOutput) ElementType() reflect.Type { return reflect.TypeOf((*Bastion)(nil)).Elem() }

func (o BastionOutput) ToBastionOutput() BastionOutput                           { return o }
func (o BastionOutput) ToBastionOutputWithContext(context.Context) BastionOutput { return o }
func (o BastionOutput) ToBastionPtrOutput() BastionPtrOutput {
	return o.ToBastionPtrOutputWithContext(context.Background())
}
func (o BastionOutput) ToBastionPtrOutputWithContext(ctx context.Context) BastionPtrOutput {
	return o.ApplyTWithContext(ctx, func(_ context.Context, v Bastion) *Bastion { return &v }).(BastionPtrOutput)
}

// BastionPtrOutput is an optional Bastion output.
type BastionPtrOutput struct{ *pulumi.OutputState }

func (BastionPtrOutput) ElementType() reflect.Type { return reflect.TypeOf((**Bastion)(nil)).Elem() }

func (o BastionPtrOutput) ToBastionPtrOutput() BastionPtrOutput                           { return o }
func (o BastionPtrOutput) ToBastionPtrOutputWithContext(context.Context) BastionPtrOutput { return o }

// ---- Kubernetes ----

// Kubernetes configures a kind kubeadm cluster, as plan.yaml's kubernetes
// block. Every field is optional; the provider fills in the defaults.
type Kubernetes struct {
	// Version is the Kubernetes release, "v1.MINOR.PATCH". Changing it
	// replaces the cluster.
	Version *string `pulumi:"version"`
	// Artifacts says where the binaries and images pushed to the nodes
	// come from.
	Artifacts *KubernetesArtifacts `pulumi:"artifacts"`
	// Endpoint is host or host:port of a load balancer in front of the
	// control-plane nodes. Changing it replaces the cluster.
	Endpoint *string `pulumi:"endpoint"`
	// PodCidr is the pods' range (default 10.244.0.0/16). Changing it
	// replaces the cluster.
	PodCidr *string `pulumi:"podCidr"`
	// ServiceCidr is the ClusterIP Services' range (default 10.96.0.0/12).
	// Changing it replaces the cluster.
	ServiceCidr *string `pulumi:"serviceCidr"`
	// Images are image archives imported into every node before it joins.
	Images []string `pulumi:"images"`
}

// KubernetesInput is an input of Kubernetes.
type KubernetesInput interface {
	pulumi.Input
	ToKubernetesOutput() KubernetesOutput
	ToKubernetesOutputWithContext(context.Context) KubernetesOutput
}

// KubernetesArgs are Kubernetes's inputs.
type KubernetesArgs struct {
	Version     pulumi.StringPtrInput       `pulumi:"version"`
	Artifacts   KubernetesArtifactsPtrInput `pulumi:"artifacts"`
	Endpoint    pulumi.StringPtrInput       `pulumi:"endpoint"`
	PodCidr     pulumi.StringPtrInput       `pulumi:"podCidr"`
	ServiceCidr pulumi.StringPtrInput       `pulumi:"serviceCidr"`
	Images      pulumi.StringArrayInput     `pulumi:"images"`
}

func (KubernetesArgs) ElementType() reflect.Type { return reflect.TypeOf((*Kubernetes)(nil)).Elem() }

func (i KubernetesArgs) ToKubernetesOutput() KubernetesOutput {
	return i.ToKubernetesOutputWithContext(context.Background())
}

func (i KubernetesArgs) ToKubernetesOutputWithContext(ctx context.Context) KubernetesOutput {
	return pulumi.ToOutputWithContext(ctx, i).(KubernetesOutput)
}

func (i KubernetesArgs) ToKubernetesPtrOutput() KubernetesPtrOutput {
	return i.ToKubernetesPtrOutputWithContext(context.Background())
}

func (i KubernetesArgs) ToKubernetesPtrOutputWithContext(ctx context.Context) KubernetesPtrOutput {
	return i.ToKubernetesOutputWithContext(ctx).ToKubernetesPtrOutputWithContext(ctx)
}

// KubernetesPtrInput is an optional Kubernetes input: &KubernetesArgs{…},
// KubernetesArgs{…} or a KubernetesPtrOutput.
type KubernetesPtrInput interface {
	pulumi.Input
	ToKubernetesPtrOutput() KubernetesPtrOutput
	ToKubernetesPtrOutputWithContext(context.Context) KubernetesPtrOutput
}

// KubernetesOutput is a Kubernetes output.
type KubernetesOutput struct{ *pulumi.OutputState }

func (KubernetesOutput) ElementType() reflect.Type { return reflect.TypeOf((*Kubernetes)(nil)).Elem() }

func (o KubernetesOutput) ToKubernetesOutput() KubernetesOutput                           { return o }
func (o KubernetesOutput) ToKubernetesOutputWithContext(context.Context) KubernetesOutput { return o }
func (o KubernetesOutput) ToKubernetesPtrOutput() KubernetesPtrOutput {
	return o.ToKubernetesPtrOutputWithContext(context.Background())
}
func (o KubernetesOutput) ToKubernetesPtrOutputWithContext(ctx context.Context) KubernetesPtrOutput {
	return o.ApplyTWithContext(ctx, func(_ context.Context, v Kubernetes) *Kubernetes { return &v }).(KubernetesPtrOutput)
}

// KubernetesPtrOutput is an optional Kubernetes output.
type KubernetesPtrOutput struct{ *pulumi.OutputState }

func (KubernetesPtrOutput) ElementType() reflect.Type {
	return reflect.TypeOf((**Kubernetes)(nil)).Elem()
}

func (o KubernetesPtrOutput) ToKubernetesPtrOutput() KubernetesPtrOutput { return o }
func (o KubernetesPtrOutput) ToKubernetesPtrOutputWithContext(context.Context) KubernetesPtrOutput {
	return o
}

// Version is the cluster's Kubernetes release.
func (o KubernetesPtrOutput) Version() pulumi.StringPtrOutput {
	return o.ApplyT(func(v *Kubernetes) *string {
		if v == nil {
			return nil
		}
		return v.Version
	}).(pulumi.StringPtrOutput)
}

// Endpoint is the control-plane load balancer, when there is one.
func (o KubernetesPtrOutput) Endpoint() pulumi.StringPtrOutput {
	return o.ApplyT(func(v *Kubernetes) *string {
		if v == nil {
			return nil
		}
		return v.Endpoint
	}).(pulumi.StringPtrOutput)
}

// PodCidr is the pods' range.
func (o KubernetesPtrOutput) PodCidr() pulumi.StringPtrOutput {
	return o.ApplyT(func(v *Kubernetes) *string {
		if v == nil {
			return nil
		}
		return v.PodCidr
	}).(pulumi.StringPtrOutput)
}

// ServiceCidr is the ClusterIP Services' range.
func (o KubernetesPtrOutput) ServiceCidr() pulumi.StringPtrOutput {
	return o.ApplyT(func(v *Kubernetes) *string {
		if v == nil {
			return nil
		}
		return v.ServiceCidr
	}).(pulumi.StringPtrOutput)
}

// ---- KubernetesArtifacts ----

// KubernetesArtifacts says where the Kubernetes artifacts come from.
type KubernetesArtifacts struct {
	// Source is build (the default), release or dir.
	Source *string `pulumi:"source"`
	// Dir is the staged directory for source dir.
	Dir *string `pulumi:"dir"`
	// URL is the release source's base URL.
	URL *string `pulumi:"url"`
}

// KubernetesArtifactsInput is an input of KubernetesArtifacts.
type KubernetesArtifactsInput interface {
	pulumi.Input
	ToKubernetesArtifactsOutput() KubernetesArtifactsOutput
	ToKubernetesArtifactsOutputWithContext(context.Context) KubernetesArtifactsOutput
}

// KubernetesArtifactsArgs are KubernetesArtifacts's inputs.
type KubernetesArtifactsArgs struct {
	Source pulumi.StringPtrInput `pulumi:"source"`
	Dir    pulumi.StringPtrInput `pulumi:"dir"`
	URL    pulumi.StringPtrInput `pulumi:"url"`
}

func (KubernetesArtifactsArgs) ElementType() reflect.Type {
	return reflect.TypeOf((*KubernetesArtifacts)(nil)).Elem()
}

func (i KubernetesArtifactsArgs) ToKubernetesArtifactsOutput() KubernetesArtifactsOutput {
	return i.ToKubernetesArtifactsOutputWithContext(context.Background())
}

func (i KubernetesArtifactsArgs) ToKubernetesArtifactsOutputWithContext(ctx context.Context) KubernetesArtifactsOutput {
	return pulumi.ToOutputWithContext(ctx, i).(KubernetesArtifactsOutput)
}

func (i KubernetesArtifactsArgs) ToKubernetesArtifactsPtrOutput() KubernetesArtifactsPtrOutput {
	return i.ToKubernetesArtifactsPtrOutputWithContext(context.Background())
}

func (i KubernetesArtifactsArgs) ToKubernetesArtifactsPtrOutputWithContext(ctx context.Context) KubernetesArtifactsPtrOutput {
	return i.ToKubernetesArtifactsOutputWithContext(ctx).ToKubernetesArtifactsPtrOutputWithContext(ctx)
}

// KubernetesArtifactsPtrInput is an optional KubernetesArtifacts input:
// &KubernetesArtifactsArgs{…}.
type KubernetesArtifactsPtrInput interface {
	pulumi.Input
	ToKubernetesArtifactsPtrOutput() KubernetesArtifactsPtrOutput
	ToKubernetesArtifactsPtrOutputWithContext(context.Context) KubernetesArtifactsPtrOutput
}

// KubernetesArtifactsOutput is a KubernetesArtifacts output.
type KubernetesArtifactsOutput struct{ *pulumi.OutputState }

func (KubernetesArtifactsOutput) ElementType() reflect.Type {
	return reflect.TypeOf((*KubernetesArtifacts)(nil)).Elem()
}

func (o KubernetesArtifactsOutput) ToKubernetesArtifactsOutput() KubernetesArtifactsOutput { return o }
func (o KubernetesArtifactsOutput) ToKubernetesArtifactsOutputWithContext(context.Context) KubernetesArtifactsOutput {
	return o
}
func (o KubernetesArtifactsOutput) ToKubernetesArtifactsPtrOutput() KubernetesArtifactsPtrOutput {
	return o.ToKubernetesArtifactsPtrOutputWithContext(context.Background())
}
func (o KubernetesArtifactsOutput) ToKubernetesArtifactsPtrOutputWithContext(ctx context.Context) KubernetesArtifactsPtrOutput {
	return o.ApplyTWithContext(ctx, func(_ context.Context, v KubernetesArtifacts) *KubernetesArtifacts { return &v }).(KubernetesArtifactsPtrOutput)
}

// KubernetesArtifactsPtrOutput is an optional KubernetesArtifacts output.
type KubernetesArtifactsPtrOutput struct{ *pulumi.OutputState }

func (KubernetesArtifactsPtrOutput) ElementType() reflect.Type {
	return reflect.TypeOf((**KubernetesArtifacts)(nil)).Elem()
}

func (o KubernetesArtifactsPtrOutput) ToKubernetesArtifactsPtrOutput() KubernetesArtifactsPtrOutput {
	return o
}
func (o KubernetesArtifactsPtrOutput) ToKubernetesArtifactsPtrOutputWithContext(context.Context) KubernetesArtifactsPtrOutput {
	return o
}

// ---- Pool ----

// Pool is a group of identical machines from one provider.
type Pool struct {
	Name     string `pulumi:"name"`
	Provider string `pulumi:"provider"`
	Count    int    `pulumi:"count"`
	// Role is manager or worker (the default).
	Role   *string           `pulumi:"role"`
	Labels map[string]string `pulumi:"labels"`
	// Taints go on a kubeadm cluster's nodes of the pool when they join.
	Taints   []string               `pulumi:"taints"`
	Settings map[string]interface{} `pulumi:"settings"`
}

// PoolInput is an input of Pool.
type PoolInput interface {
	pulumi.Input
	ToPoolOutput() PoolOutput
	ToPoolOutputWithContext(context.Context) PoolOutput
}

// PoolArgs are Pool's inputs.
type PoolArgs struct {
	// Name is unique in the cluster.
	Name pulumi.StringInput `pulumi:"name"`
	// Provider makes the machines: docker, static, aws, gcp or openstack.
	Provider pulumi.StringInput `pulumi:"provider"`
	// Count is how many machines the pool has.
	Count pulumi.IntInput `pulumi:"count"`
	// Role is manager or worker (the default).
	Role pulumi.StringPtrInput `pulumi:"role"`
	// Labels go on the machines at their provider.
	Labels pulumi.StringMapInput `pulumi:"labels"`
	// Taints go on a kubeadm cluster's nodes of the pool when they join:
	// "key=value:Effect" or "key:Effect".
	Taints pulumi.StringArrayInput `pulumi:"taints"`
	// Settings are the provider's settings, as in plan.yaml.
	Settings pulumi.MapInput `pulumi:"settings"`
}

func (PoolArgs) ElementType() reflect.Type { return reflect.TypeOf((*Pool)(nil)).Elem() }

func (i PoolArgs) ToPoolOutput() PoolOutput { return i.ToPoolOutputWithContext(context.Background()) }

func (i PoolArgs) ToPoolOutputWithContext(ctx context.Context) PoolOutput {
	return pulumi.ToOutputWithContext(ctx, i).(PoolOutput)
}

// PoolArrayInput is an input of []Pool.
type PoolArrayInput interface {
	pulumi.Input
	ToPoolArrayOutput() PoolArrayOutput
	ToPoolArrayOutputWithContext(context.Context) PoolArrayOutput
}

// PoolArray is a list of pool inputs.
type PoolArray []PoolInput

func (PoolArray) ElementType() reflect.Type { return reflect.TypeOf((*[]Pool)(nil)).Elem() }

func (i PoolArray) ToPoolArrayOutput() PoolArrayOutput {
	return i.ToPoolArrayOutputWithContext(context.Background())
}

func (i PoolArray) ToPoolArrayOutputWithContext(ctx context.Context) PoolArrayOutput {
	return pulumi.ToOutputWithContext(ctx, i).(PoolArrayOutput)
}

// PoolOutput is a Pool output.
type PoolOutput struct{ *pulumi.OutputState }

func (PoolOutput) ElementType() reflect.Type { return reflect.TypeOf((*Pool)(nil)).Elem() }

func (o PoolOutput) ToPoolOutput() PoolOutput                           { return o }
func (o PoolOutput) ToPoolOutputWithContext(context.Context) PoolOutput { return o }

func (o PoolOutput) Name() pulumi.StringOutput {
	return o.ApplyT(func(v Pool) string { return v.Name }).(pulumi.StringOutput)
}

func (o PoolOutput) Provider() pulumi.StringOutput {
	return o.ApplyT(func(v Pool) string { return v.Provider }).(pulumi.StringOutput)
}

func (o PoolOutput) Count() pulumi.IntOutput {
	return o.ApplyT(func(v Pool) int { return v.Count }).(pulumi.IntOutput)
}

func (o PoolOutput) Role() pulumi.StringPtrOutput {
	return o.ApplyT(func(v Pool) *string { return v.Role }).(pulumi.StringPtrOutput)
}

func (o PoolOutput) Taints() pulumi.StringArrayOutput {
	return o.ApplyT(func(v Pool) []string { return v.Taints }).(pulumi.StringArrayOutput)
}

// PoolArrayOutput is a []Pool output.
type PoolArrayOutput struct{ *pulumi.OutputState }

func (PoolArrayOutput) ElementType() reflect.Type { return reflect.TypeOf((*[]Pool)(nil)).Elem() }

func (o PoolArrayOutput) ToPoolArrayOutput() PoolArrayOutput                           { return o }
func (o PoolArrayOutput) ToPoolArrayOutputWithContext(context.Context) PoolArrayOutput { return o }

// Index is the pool at index i.
func (o PoolArrayOutput) Index(i pulumi.IntInput) PoolOutput {
	return pulumi.All(o, i).ApplyT(func(vs []interface{}) Pool {
		return vs[0].([]Pool)[vs[1].(int)]
	}).(PoolOutput)
}

// ---- Node ----

// Node is one machine of the cluster.
type Node struct {
	// ID is provision's machine ID, also the node's name in the swarm or
	// Kubernetes.
	ID       string `pulumi:"id"`
	Pool     string `pulumi:"pool"`
	Role     string `pulumi:"role"`
	Provider string `pulumi:"provider"`
	// ProviderID is the provider's own ID (container, instance, server).
	ProviderID string `pulumi:"providerId"`
	// Address and Port are where provision reaches it over SSH.
	Address string `pulumi:"address"`
	Port    int    `pulumi:"port"`
	// PrivateAddress is the address other nodes use, when it differs.
	PrivateAddress *string `pulumi:"privateAddress"`
	// Phase is how far bootstrap came: intent, created, ready, joined.
	Phase string `pulumi:"phase"`
}

// NodeOutput is a Node output.
type NodeOutput struct{ *pulumi.OutputState }

func (NodeOutput) ElementType() reflect.Type { return reflect.TypeOf((*Node)(nil)).Elem() }

func (o NodeOutput) ToNodeOutput() NodeOutput                           { return o }
func (o NodeOutput) ToNodeOutputWithContext(context.Context) NodeOutput { return o }

func (o NodeOutput) ID() pulumi.StringOutput {
	return o.ApplyT(func(v Node) string { return v.ID }).(pulumi.StringOutput)
}

func (o NodeOutput) Pool() pulumi.StringOutput {
	return o.ApplyT(func(v Node) string { return v.Pool }).(pulumi.StringOutput)
}

func (o NodeOutput) Role() pulumi.StringOutput {
	return o.ApplyT(func(v Node) string { return v.Role }).(pulumi.StringOutput)
}

func (o NodeOutput) ProviderID() pulumi.StringOutput {
	return o.ApplyT(func(v Node) string { return v.ProviderID }).(pulumi.StringOutput)
}

func (o NodeOutput) Address() pulumi.StringOutput {
	return o.ApplyT(func(v Node) string { return v.Address }).(pulumi.StringOutput)
}

func (o NodeOutput) Port() pulumi.IntOutput {
	return o.ApplyT(func(v Node) int { return v.Port }).(pulumi.IntOutput)
}

// NodeArrayOutput is a []Node output.
type NodeArrayOutput struct{ *pulumi.OutputState }

func (NodeArrayOutput) ElementType() reflect.Type { return reflect.TypeOf((*[]Node)(nil)).Elem() }

func (o NodeArrayOutput) ToNodeArrayOutput() NodeArrayOutput                           { return o }
func (o NodeArrayOutput) ToNodeArrayOutputWithContext(context.Context) NodeArrayOutput { return o }

// Index is the node at index i.
func (o NodeArrayOutput) Index(i pulumi.IntInput) NodeOutput {
	return pulumi.All(o, i).ApplyT(func(vs []interface{}) Node {
		return vs[0].([]Node)[vs[1].(int)]
	}).(NodeOutput)
}
