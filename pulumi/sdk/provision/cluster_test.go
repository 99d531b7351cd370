package provision

import (
	"context"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
)

// mocks stands in for the engine: it records what was registered and
// answers like the provider, with the outputs in plain text so the SDK's
// own secret marking is what the test sees.
type mocks struct {
	mu         sync.Mutex
	registered []pulumi.MockResourceArgs
}

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	m.registered = append(m.registered, args)
	m.mu.Unlock()
	out := args.Inputs.Copy()
	out["managerAddress"] = resource.NewProperty("172.30.0.2")
	out["privateKey"] = resource.NewProperty("-----BEGIN OPENSSH PRIVATE KEY-----")
	out["workerJoinToken"] = resource.NewProperty("SWMTKN-1-worker")
	out["managerJoinToken"] = resource.NewProperty("SWMTKN-1-manager")
	out["nodes"] = resource.NewProperty([]resource.PropertyValue{
		resource.NewProperty(resource.NewPropertyMapFromMap(map[string]any{
			"id": "c-managers-1", "pool": "managers", "role": "manager", "provider": "docker",
			"providerId": "abc", "address": "172.30.0.2", "port": 22, "phase": "joined"})),
	})
	return args.Name, out, nil
}

func (*mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) { return args.Args, nil }

func await(t *testing.T, o pulumi.Output) internals.UnsafeAwaitOutputResult {
	t.Helper()
	r, err := internals.UnsafeAwaitOutput(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewCluster(t *testing.T) {
	m := &mocks{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		c, err := NewCluster(ctx, "edge", &ClusterArgs{
			SSH: &SSHArgs{User: pulumi.String("ops"), PrivateKey: pulumi.String("KEY")},
			Pools: PoolArray{
				PoolArgs{Name: pulumi.String("managers"), Provider: pulumi.String("docker"), Role: pulumi.String("manager"), Count: pulumi.Int(1)},
				PoolArgs{Name: pulumi.String("workers"), Provider: pulumi.String("aws"), Count: pulumi.Int(2),
					Labels:   pulumi.StringMap{"tier": pulumi.String("general")},
					Settings: pulumi.Map{"instance_type": pulumi.String("t3.small"), "root_volume_gb": pulumi.Int(20)}},
			},
		})
		if err != nil {
			return err
		}
		if r := await(t, c.ManagerAddress); r.Value != "172.30.0.2" || r.Secret {
			t.Errorf("ManagerAddress = %+v, want the provider's value in plain text", r)
		}
		for name, o := range map[string]pulumi.StringOutput{"PrivateKey": c.PrivateKey, "WorkerJoinToken": c.WorkerJoinToken, "ManagerJoinToken": c.ManagerJoinToken} {
			if r := await(t, o); !r.Secret || r.Value == "" {
				t.Errorf("%s = %+v, want a secret value", name, r)
			}
		}
		if r := await(t, c.Nodes.Index(pulumi.Int(0)).Address()); r.Value != "172.30.0.2" {
			t.Errorf("Nodes[0].Address = %+v", r)
		}
		if r := await(t, c.Pools.Index(pulumi.Int(1)).Count()); r.Value != 2 {
			t.Errorf("Pools[1].Count = %+v", r)
		}
		return nil
	}, pulumi.WithMocks("proj", "stack", m))
	if err != nil {
		t.Fatal(err)
	}

	if len(m.registered) != 1 || m.registered[0].TypeToken != ClusterType || m.registered[0].Name != "edge" {
		t.Fatalf("registered %+v, want one %s named edge", m.registered, ClusterType)
	}
	in := m.registered[0].Inputs
	ssh := in["ssh"].ObjectValue()
	if !ssh["privateKey"].IsSecret() || ssh["user"].StringValue() != "ops" {
		t.Errorf("ssh input %v: want user ops and a secret privateKey", ssh)
	}
	pools := in["pools"].ArrayValue()
	if len(pools) != 2 {
		t.Fatalf("pools input %v", pools)
	}
	w := pools[1].ObjectValue()
	if w["name"].StringValue() != "workers" || w["provider"].StringValue() != "aws" || w["count"].NumberValue() != 2 ||
		w["labels"].ObjectValue()["tier"].StringValue() != "general" ||
		w["settings"].ObjectValue()["instance_type"].StringValue() != "t3.small" ||
		w["settings"].ObjectValue()["root_volume_gb"].NumberValue() != 20 {
		t.Errorf("workers pool input %v", w)
	}
	if pools[0].ObjectValue()["role"].StringValue() != "manager" {
		t.Errorf("managers pool input %v", pools[0])
	}
}

func TestNewClusterNeedsPools(t *testing.T) {
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := NewCluster(ctx, "edge", &ClusterArgs{})
		return err
	}, pulumi.WithMocks("proj", "stack", &mocks{}))
	if err == nil {
		t.Fatal("NewCluster without pools succeeded")
	}
}
