package provision

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
)

// clusterType is the resource's token in the schema.
const clusterType = "provision:index:Cluster"

// secretOutputs are the Cluster outputs the engine must keep secret.
var secretOutputs = []string{"kubeconfig", "managerJoinToken", "privateKey", "workerJoinToken"}

// mocks stands in for the engine: it records what was registered and
// answers like the provider, with the outputs in plain text. Mocks ignore
// AdditionalSecretOutputs, so the tests check the SDK asks for them.
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
	if kind, ok := args.Inputs["kind"]; ok && kind.IsString() && kind.StringValue() == "kubeadm" {
		out["workerJoinToken"], out["managerJoinToken"] = resource.NewProperty(""), resource.NewProperty("")
		out["kubeconfig"] = resource.NewProperty(testKubeconfig)
	}
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
			Ssh: &SshArgs{User: pulumi.String("ops"), PrivateKey: pulumi.String("KEY")},
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
			if r := await(t, o); r.Value == "" {
				t.Errorf("%s = %+v, want the provider's value", name, r)
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

	if len(m.registered) != 1 || m.registered[0].TypeToken != clusterType || m.registered[0].Name != "edge" {
		t.Fatalf("registered %+v, want one %s named edge", m.registered, clusterType)
	}
	checkSecretOutputs(t, m.registered[0])
	in := m.registered[0].Inputs
	// ssh.privateKey goes out as given; the provider's Check marks it
	// secret (the schema says so) before the engine stores the inputs.
	ssh := in["ssh"].ObjectValue()
	if ssh["privateKey"].StringValue() != "KEY" || ssh["user"].StringValue() != "ops" {
		t.Errorf("ssh input %v: want user ops and privateKey KEY", ssh)
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

const testKubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {server: 'https://10.0.0.5:6443'}\n  name: k8s\n"

// TestNewKubeadmCluster: a kubeadm cluster's Kubernetes settings and pool
// taints reach the provider, and its kubeconfig is a secret output, so
// exporting it never prints the admin's key.
func TestNewKubeadmCluster(t *testing.T) {
	m := &mocks{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		c, err := NewCluster(ctx, "k8s", &ClusterArgs{
			Kind: pulumi.String("kubeadm"),
			Kubernetes: &KubernetesArgs{
				Version:   pulumi.String("v1.33.1"),
				Artifacts: &KubernetesArtifactsArgs{Source: pulumi.String("release"), Url: pulumi.String("https://mirror.example.com")},
				Endpoint:  pulumi.String("api.example.com"),
				PodCidr:   pulumi.String("10.32.0.0/16"),
				Images:    pulumi.StringArray{pulumi.String("images/app.tar")},
			},
			Pools: PoolArray{
				PoolArgs{Name: pulumi.String("control"), Provider: pulumi.String("docker"), Role: pulumi.String("manager"), Count: pulumi.Int(1)},
				PoolArgs{Name: pulumi.String("gpus"), Provider: pulumi.String("aws"), Count: pulumi.Int(2),
					Taints: pulumi.StringArray{pulumi.String("dedicated=gpu:NoSchedule")}},
			},
		})
		if err != nil {
			return err
		}
		if r := await(t, c.Kubeconfig); r.Value == nil || *r.Value.(*string) != testKubeconfig {
			t.Errorf("Kubeconfig = %+v, want the provider's kubeconfig", r)
		}
		if r := await(t, c.Kubernetes.Version()); r.Secret || r.Value == nil || *r.Value.(*string) != "v1.33.1" {
			t.Errorf("Kubernetes.Version = %+v", r)
		}
		if r := await(t, c.Pools.Index(pulumi.Int(1)).Taints()); len(r.Value.([]string)) != 1 {
			t.Errorf("Pools[1].Taints = %+v", r)
		}
		return nil
	}, pulumi.WithMocks("proj", "stack", m))
	if err != nil {
		t.Fatal(err)
	}

	checkSecretOutputs(t, m.registered[0])
	in := m.registered[0].Inputs
	k := in["kubernetes"].ObjectValue()
	art := k["artifacts"].ObjectValue()
	if in["kind"].StringValue() != "kubeadm" || k["version"].StringValue() != "v1.33.1" || k["endpoint"].StringValue() != "api.example.com" ||
		k["podCidr"].StringValue() != "10.32.0.0/16" || art["source"].StringValue() != "release" ||
		art["url"].StringValue() != "https://mirror.example.com" || k["images"].ArrayValue()[0].StringValue() != "images/app.tar" {
		t.Errorf("kubernetes input %v", k)
	}
	taints := in["pools"].ArrayValue()[1].ObjectValue()["taints"].ArrayValue()
	if len(taints) != 1 || taints[0].StringValue() != "dedicated=gpu:NoSchedule" {
		t.Errorf("gpus pool taints input %v", taints)
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

// checkSecretOutputs: the SDK registers a cluster asking the engine to keep
// its keys, join tokens and kubeconfig secret in the stack's state and in
// the program, whatever the provider returns.
func checkSecretOutputs(t *testing.T, r pulumi.MockResourceArgs) {
	t.Helper()
	if r.RegisterRPC == nil {
		t.Fatal("the mock monitor gave no RegisterResource request")
	}
	got := slices.Sorted(slices.Values(r.RegisterRPC.GetAdditionalSecretOutputs()))
	if !slices.Equal(got, secretOutputs) {
		t.Errorf("additional secret outputs %v, want %v", got, secretOutputs)
	}
}
