package main

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"

	"github.com/provisionhq/provision/pulumi/sdk/provision"
)

// clusterType is the Cluster resource's token.
const clusterType = "provision:index:Cluster"

// mocks answers for the engine and the provider: a cluster's outputs are
// its inputs plus a manager address, a key and a node, all in plain text.
// Mocks ignore the secret outputs the SDK asks the engine for, so the test
// checks the request; e2e's TestPulumiExample sees the real engine hide them.
type mocks struct {
	mu         sync.Mutex
	registered []pulumi.MockResourceArgs
}

const managerAddress = "172.30.0.2"

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	m.registered = append(m.registered, args)
	m.mu.Unlock()
	out := args.Inputs.Copy()
	if args.TypeToken == clusterType {
		out["managerAddress"] = resource.NewProperty(managerAddress)
		out["privateKey"] = resource.NewProperty("-----BEGIN OPENSSH PRIVATE KEY-----")
		out["nodes"] = resource.NewProperty([]resource.PropertyValue{
			resource.NewProperty(resource.NewPropertyMapFromMap(map[string]any{
				"id": "pulumi-local-managers-1", "pool": "managers", "role": "manager", "provider": "docker",
				"providerId": "c0ffee", "address": managerAddress, "port": 22, "phase": "joined"})),
		})
	}
	return args.Name + "-id", out, nil
}

func (*mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) { return args.Args, nil }

// withConfig sets the stack's configuration, as `pulumi config set` would.
func withConfig(cfg map[string]string) pulumi.RunOption {
	return func(info *pulumi.RunInfo) { info.Config = cfg }
}

// TestProgram runs the example under Pulumi's mocks: one cluster of the
// expected shape is registered, the exports are wired from its outputs,
// and the private key is a secret output.
func TestProgram(t *testing.T) {
	tests := []struct {
		name    string
		config  map[string]string
		cluster string
		workers float64
	}{
		{"defaults", nil, "pulumi-local", 2},
		{"configured", map[string]string{"provision-local:workers": "3", "provision-local:clusterName": "edge"}, "edge", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &mocks{}
			exports := map[string]internals.UnsafeAwaitOutputResult{}
			err := pulumi.RunErr(func(ctx *pulumi.Context) error {
				if err := program(ctx); err != nil {
					return err
				}
				for name, v := range ctx.GetCurrentExportMap() {
					r, err := internals.UnsafeAwaitOutput(context.Background(), pulumi.ToOutput(v))
					if err != nil {
						return err
					}
					exports[name] = r
				}
				return nil
			}, pulumi.WithMocks("provision-local", "dev", m), withConfig(tt.config))
			if err != nil {
				t.Fatal(err)
			}

			var clusters []pulumi.MockResourceArgs
			for _, r := range m.registered {
				if r.TypeToken == clusterType {
					clusters = append(clusters, r)
				}
			}
			if len(clusters) != 1 {
				t.Fatalf("%d %s registered, want 1 (all: %+v)", len(clusters), clusterType, m.registered)
			}
			in := clusters[0].Inputs
			if in["name"].StringValue() != tt.cluster || in["ssh"].ObjectValue()["user"].StringValue() != "root" {
				t.Errorf("cluster inputs name=%v ssh=%v, want name %q and user root", in["name"], in["ssh"], tt.cluster)
			}
			if _, ok := in["ssh"].ObjectValue()["privateKey"]; ok {
				t.Errorf("the example sets a private key; it should let the provider generate one")
			}
			pools := in["pools"].ArrayValue()
			want := []struct {
				name, role string
				count      float64
			}{{"managers", "manager", 1}, {"workers", "", tt.workers}}
			if len(pools) != len(want) {
				t.Fatalf("pools %v, want %d", pools, len(want))
			}
			for i, w := range want {
				got := pools[i].ObjectValue()
				role := ""
				if r, ok := got["role"]; ok {
					role = r.StringValue()
				}
				if got["name"].StringValue() != w.name || got["provider"].StringValue() != "docker" ||
					got["count"].NumberValue() != w.count || role != w.role {
					t.Errorf("pools[%d] = %v, want %s on docker, role %q, count %v", i, got, w.name, w.role, w.count)
				}
			}

			if r := exports["managerAddress"]; r.Value != managerAddress || r.Secret || !r.Known {
				t.Errorf("managerAddress export = %+v, want the cluster's output %q in plain text", r, managerAddress)
			}
			if r := exports["privateKey"]; r.Value == "" {
				t.Errorf("privateKey export = %+v, want the cluster's key", r)
			}
			if rpc := clusters[0].RegisterRPC; rpc == nil || !slices.Contains(rpc.GetAdditionalSecretOutputs(), "privateKey") {
				t.Errorf("cluster registered without privateKey as a secret output: %v", rpc)
			}
			if r, ok := exports["nodes"]; !ok || len(r.Value.([]provision.Node)) != 1 {
				t.Errorf("nodes export = %+v, want the cluster's nodes", r)
			}
		})
	}
}
