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
	pulumi.RegisterInputType(reflect.TypeOf((*PoolInput)(nil)).Elem(), PoolArgs{})
	pulumi.RegisterInputType(reflect.TypeOf((*PoolArrayInput)(nil)).Elem(), PoolArray{})
	pulumi.RegisterOutputType(SSHOutput{})
	pulumi.RegisterOutputType(SSHPtrOutput{})
	pulumi.RegisterOutputType(BastionOutput{})
	pulumi.RegisterOutputType(BastionPtrOutput{})
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

// ---- Pool ----

// Pool is a group of identical machines from one provider.
type Pool struct {
	Name     string `pulumi:"name"`
	Provider string `pulumi:"provider"`
	Count    int    `pulumi:"count"`
	// Role is manager or worker (the default).
	Role     *string                `pulumi:"role"`
	Labels   map[string]string      `pulumi:"labels"`
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
	// ID is provision's machine ID, also the node's host name in the swarm.
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
