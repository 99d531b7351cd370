package provider

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/blang/semver"
	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/integration"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
	"gopkg.in/yaml.v3"

	"github.com/provisionhq/provision/plans"
	"github.com/provisionhq/provision/providers/builtin"
)

// server runs the provider in process behind Pulumi's gRPC layer, as the
// engine would talk to the plugin.
func server(t *testing.T) integration.Server {
	t.Helper()
	prov, err := New(Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := integration.NewServer(t.Context(), Name, semver.MustParse("0.1.0"), integration.WithProvider(prov))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func clusterURN(name string) resource.URN {
	return resource.NewURN("test", "provision", "", "provision:index:Cluster", name)
}

// props is a Pulumi property map from plain Go values.
func props(m map[string]any) property.Map {
	return resource.FromResourcePropertyValue(resource.NewProperty(resource.NewPropertyMapFromMap(m))).AsMap()
}

func pool(name, provider, role string, count int) map[string]any {
	m := map[string]any{"name": name, "provider": provider, "count": count}
	if role != "" {
		m["role"] = role
	}
	return m
}

func TestCheckDefaults(t *testing.T) {
	s := server(t)
	resp, err := s.Check(p.CheckRequest{Urn: clusterURN("edge"), Inputs: props(map[string]any{
		"pools": []any{pool("managers", "docker", "manager", 1), pool("workers", "docker", "", 2)},
	})})
	if err != nil || len(resp.Failures) > 0 {
		t.Fatalf("Check: %v %v", err, resp.Failures)
	}
	got := resource.ToResourcePropertyValue(property.New(resp.Inputs)).ObjectValue().Mappable()
	for path, want := range map[string]any{
		"name":           "edge", // the resource's name
		"kind":           "swarm",
		"ssh.user":       "root",
		"ssh.port":       float64(22),
		"pools[1].role":  "worker",
		"pools[0].role":  "manager",
		"pools[1].count": float64(2),
	} {
		if v := lookup(got, path); v != want {
			t.Errorf("%s = %#v, want %#v", path, v, want)
		}
	}
}

// TestCheckKubernetes: a kubeadm cluster's checked inputs carry the
// loader's Kubernetes defaults, and an unnamed version stays the one the
// cluster was created with, so a provider with a newer default does not
// replace it.
func TestCheckKubernetes(t *testing.T) {
	s := server(t)
	manager := pool("managers", "docker", "manager", 1)
	checked := func(in map[string]any, old property.Map) map[string]any {
		t.Helper()
		resp, err := s.Check(p.CheckRequest{Urn: clusterURN("k"), State: old, Inputs: props(in)})
		if err != nil || len(resp.Failures) > 0 {
			t.Fatalf("Check: %v %+v", err, resp.Failures)
		}
		return resource.ToResourcePropertyValue(property.New(resp.Inputs)).ObjectValue().Mappable()
	}
	created := props(checked(kube(map[string]any{"version": "v1.33.1"}, manager), property.Map{}))
	tests := []struct {
		name    string
		in      map[string]any
		old     property.Map
		version string
	}{
		{"new cluster", kube(nil, manager), property.Map{}, plans.DefaultKubernetesVersion},
		{"version kept", kube(nil, manager), created, "v1.33.1"},
		{"version kept, other settings given", kube(map[string]any{"endpoint": "api.example.com"}, manager), created, "v1.33.1"},
		{"version changed", kube(map[string]any{"version": "v1.34.0"}, manager), created, "v1.34.0"},
		{"was a swarm", kube(nil, manager), props(checked(map[string]any{"pools": []any{manager}}, property.Map{})), plans.DefaultKubernetesVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checked(tt.in, tt.old)
			for path, want := range map[string]any{
				"kind":                        "kubeadm",
				"kubernetes.version":          tt.version,
				"kubernetes.artifacts.source": "build",
				"kubernetes.podCidr":          "10.244.0.0/16",
				"kubernetes.serviceCidr":      "10.96.0.0/12",
			} {
				if v := lookup(got, path); v != want {
					t.Errorf("%s = %#v, want %#v", path, v, want)
				}
			}
		})
	}
	// A swarm gets no kubernetes block.
	if got := checked(map[string]any{"pools": []any{manager}}, property.Map{}); got["kubernetes"] != nil {
		t.Errorf("a swarm's checked inputs have kubernetes %v", got["kubernetes"])
	}
}

// lookup reads "a.b[1].c" from nested maps and lists.
func lookup(v any, path string) any {
	for _, part := range strings.Split(path, ".") {
		name, idx, hasIdx := strings.Cut(part, "[")
		v = v.(map[string]any)[name]
		if hasIdx {
			i := int(idx[0] - '0')
			v = v.([]any)[i]
		}
	}
	return v
}

// TestCheckFailures: every problem `provision validate` finds comes back on
// the input property to edit, with the loader's own message.
func TestCheckFailures(t *testing.T) {
	s := server(t)
	manager := pool("managers", "docker", "manager", 1)
	tests := []struct {
		name   string
		inputs map[string]any
		prop   string
		reason string
	}{
		{"bad name", map[string]any{"name": "Bad_Name", "pools": []any{manager}},
			"name", `cluster.name: "Bad_Name" is not a valid cluster name`},
		{"k3s refused", map[string]any{"kind": "k3s", "pools": []any{manager}},
			"kind", "cluster.kind: k3s cannot be built by provision (use kind: kubeadm for Kubernetes"},
		{"unknown kind", map[string]any{"kind": "nomad", "pools": []any{manager}},
			"kind", `cluster.kind: unknown cluster kind "nomad"`},
		{"no pools", map[string]any{"pools": []any{}},
			"pools", "at least one pool is required"},
		{"no manager", map[string]any{"pools": []any{pool("workers", "docker", "", 2)}},
			"pools", "a swarm needs a manager"},
		{"negative count", map[string]any{"pools": []any{manager, pool("workers", "docker", "", -1)}},
			"pools[1].count", "pools[1].count: must be ≥ 0, got -1"},
		{"unknown provider", map[string]any{"pools": []any{pool("managers", "dokcer", "manager", 1)}},
			"pools[0].provider", `pools[0].provider: unknown provider "dokcer" (did you mean "docker"?)`},
		{"unknown role", map[string]any{"pools": []any{manager, pool("workers", "docker", "boss", 1)}},
			"pools[1].role", `pools[1].role: unknown role "boss"`},
		{"duplicate pool", map[string]any{"pools": []any{manager, pool("managers", "docker", "", 1)}},
			"pools[1].name", `pools[1].name: duplicate pool "managers"`},
		{"bad pool name", map[string]any{"pools": []any{manager, pool("Workers", "docker", "", 1)}},
			"pools[1].name", `pools[1].name: "Workers" is not a valid pool name`},
		{"settings the provider refuses", map[string]any{"pools": []any{
			map[string]any{"name": "managers", "provider": "docker", "role": "manager", "count": 1, "settings": map[string]any{"imag": "x"}}}},
			"pools[0].settings.imag", `pools[0].settings: unknown setting "imag" (did you mean "image"?)`},
		{"spot on a provider without it", map[string]any{"pools": []any{
			map[string]any{"name": "managers", "provider": "docker", "role": "manager", "count": 1, "spot": true}}},
			"pools[0].spot", `pools[0].spot: provider "docker" has no spot capacity`},
		{"empty label key", map[string]any{"pools": []any{
			map[string]any{"name": "managers", "provider": "docker", "role": "manager", "count": 1, "labels": map[string]any{"": "x"}}}},
			"pools[0].labels", "label keys must not be empty"},
		{"bastion without host key", map[string]any{"ssh": map[string]any{"bastion": map[string]any{"host": "jump.example.com"}}, "pools": []any{manager}},
			"ssh.bastion.hostKey", "ssh.bastion.host_key: required (the bastion's public host key"},
		{"bastion host key not a key", map[string]any{"ssh": map[string]any{"bastion": map[string]any{"host": "jump.example.com", "hostKey": "nope"}}, "pools": []any{manager}},
			"ssh.bastion.hostKey", "ssh.bastion.host_key: not an SSH public key"},
		{"port out of range", map[string]any{"ssh": map[string]any{"port": 70000}, "pools": []any{manager}},
			"ssh.port", "ssh.port: 70000 is out of range"},
		{"private key not a key", map[string]any{"ssh": map[string]any{"privateKey": "-----BEGIN NOTHING-----"}, "pools": []any{manager}},
			"ssh.privateKey", "not a private key in OpenSSH or PEM form"},
		{"kubeadm without a control plane", map[string]any{"kind": "kubeadm", "pools": []any{pool("workers", "docker", "", 2)}},
			"pools", "a Kubernetes cluster needs a control-plane node"},
		{"kubeadm bad version", kube(map[string]any{"version": "1.33"}, manager),
			"kubernetes.version", `kubernetes.version: "1.33" is not a Kubernetes version (write the release as "v1.MINOR.PATCH"`},
		{"kubeadm version too old", kube(map[string]any{"version": "v1.29.4"}, manager),
			"kubernetes.version", "kubernetes.version: v1.29.4 is too old"},
		{"unknown artifacts source", kube(map[string]any{"artifacts": map[string]any{"source": "nix"}}, manager),
			"kubernetes.artifacts.source", `kubernetes.artifacts.source: unknown artifact source "nix"`},
		{"artifacts dir missing", kube(map[string]any{"artifacts": map[string]any{"source": "dir"}}, manager),
			"kubernetes.artifacts.dir", "kubernetes.artifacts.dir: required"},
		{"artifacts url without release", kube(map[string]any{"artifacts": map[string]any{"url": "https://mirror.example.com"}}, manager),
			"kubernetes.artifacts.url", "kubernetes.artifacts.url: unused with source: build"},
		{"bad endpoint", kube(map[string]any{"endpoint": "api.example.com:99999"}, manager),
			"kubernetes.endpoint", `kubernetes.endpoint: "api.example.com:99999": port "99999" is out of range`},
		{"pod range too small", kube(map[string]any{"podCidr": "10.244.0.0/24"}, manager),
			"kubernetes.podCidr", `kubernetes.pod_cidr: "10.244.0.0/24" is not usable`},
		{"service range overlaps pods", kube(map[string]any{"serviceCidr": "10.244.128.0/20"}, manager),
			"kubernetes.serviceCidr", "kubernetes.service_cidr: 10.244.128.0/20 overlaps pod_cidr 10.244.0.0/16"},
		{"image archive missing", kube(map[string]any{"images": []any{"/nonexistent/app.tar"}}, manager),
			"kubernetes.images[0]", "kubernetes.images[0]: /nonexistent/app.tar: no such file or directory"},
		{"malformed taint", kube(nil, manager, map[string]any{"name": "gpus", "provider": "docker", "count": 1,
			"taints": []any{"dedicated=gpu:NoSchedule", "gpu"}}),
			"pools[1].taints[1]", `pools[1].taints[1]: "gpu" has no single :Effect`},
		{"taint with an unknown effect", kube(nil, manager, map[string]any{"name": "gpus", "provider": "docker", "count": 1,
			"taints": []any{"dedicated=gpu:NoScheduel"}}),
			"pools[1].taints[0]", `unknown effect "NoScheduel"`},
		{"taints on a swarm", map[string]any{"pools": []any{manager, map[string]any{"name": "gpus", "provider": "docker", "count": 1,
			"taints": []any{"dedicated=gpu:NoSchedule"}}}},
			"pools[1].taints", "pools[1].taints: a swarm cluster has no taints"},
		{"kubernetes block on a swarm", map[string]any{"kubernetes": map[string]any{}, "pools": []any{manager}},
			"kubernetes", "kubernetes: only a kind: kubeadm cluster reads this block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.Check(p.CheckRequest{Urn: clusterURN("c1"), Inputs: props(tt.inputs)})
			if err != nil {
				t.Fatalf("Check error: %v", err)
			}
			for _, f := range resp.Failures {
				if (tt.prop == "" || f.Property == tt.prop) && strings.Contains(f.Reason, tt.reason) {
					return
				}
			}
			t.Fatalf("failures %+v: none on %q containing %q", resp.Failures, tt.prop, tt.reason)
		})
	}
}

// kube is the inputs of a kubeadm cluster with the given kubernetes block
// (nil: none) and pools.
func kube(kubernetes map[string]any, pools ...map[string]any) map[string]any {
	in := map[string]any{"kind": "kubeadm", "pools": []any{}}
	for _, p := range pools {
		in["pools"] = append(in["pools"].([]any), p)
	}
	if kubernetes != nil {
		in["kubernetes"] = kubernetes
	}
	return in
}

// TestPlanOfInputs: the plan the inputs become is the plan a user would
// write, so Check's messages are `provision validate`'s.
func TestPlanOfInputs(t *testing.T) {
	args := ClusterArgs{Name: "edge", SSH: &SSHArgs{User: "ops", Port: 2222}, Pools: []PoolArgs{
		{Name: "managers", Provider: "docker", Role: "manager", Count: 1},
		{Name: "workers", Provider: "docker", Count: 2, Labels: map[string]string{"tier": "a \"quoted\"\nvalue"},
			Settings: map[string]any{"cpus": 1.5, "memory": "1g"}},
	}}
	pl, failures, err := loadPlan(args, builtin.Registry())
	if err != nil || len(failures) > 0 {
		t.Fatalf("inputs do not load: %v %+v", err, failures)
	}
	w := pl.Pools[1]
	if pl.Cluster.Name != "edge" || pl.SSH.User != "ops" || pl.SSH.Port != 2222 || w.Labels["tier"] != "a \"quoted\"\nvalue" ||
		w.Settings["cpus"] != 1.5 || w.Settings["memory"] != "1g" || w.Count != 2 || w.Role != "worker" {
		t.Fatalf("plan differs from the inputs: %+v %+v", pl, w)
	}
	if args.Pools[1].Role != "" {
		t.Fatalf("loading filled a default into the caller's inputs: %+v", args.Pools[1])
	}
}

// TestPlanOfKubernetes: a kubeadm cluster's inputs become the plan's
// kubernetes block and pool taints.
func TestPlanOfKubernetes(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "app.tar")
	if err := os.WriteFile(img, []byte("archive"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := ClusterArgs{Name: "k", Kind: "kubeadm",
		Kubernetes: &KubernetesArgs{Version: "v1.33.1", Artifacts: &KubernetesArtifactsArgs{Source: "dir", Dir: dir},
			Endpoint: "api.example.com:443", PodCIDR: "10.32.0.0/16", ServiceCIDR: "10.33.0.0/16", Images: []string{img}},
		Pools: []PoolArgs{
			{Name: "control", Provider: "docker", Role: "manager", Count: 1},
			{Name: "gpus", Provider: "docker", Count: 2, Taints: []string{"dedicated=gpu:NoSchedule", "nvidia.com/gpu:NoExecute"}},
		}}
	pl, failures, err := loadPlan(args, builtin.Registry())
	if err != nil || len(failures) > 0 {
		t.Fatalf("inputs do not load: %v %+v", err, failures)
	}
	k := pl.Kubernetes
	want := plans.Kubernetes{Version: "v1.33.1", Artifacts: plans.KubernetesArtifacts{Source: "dir", Dir: dir},
		Endpoint: "api.example.com:443", PodCIDR: "10.32.0.0/16", ServiceCIDR: "10.33.0.0/16", Images: []string{img}}
	if pl.Cluster.Kind != "kubeadm" || k == nil || !reflect.DeepEqual(*k, want) ||
		!slices.Equal(pl.Pools[1].Taints, args.Pools[1].Taints) {
		t.Fatalf("plan differs from the inputs: %+v %+v", k, pl.Pools[1])
	}
}

func TestDiffArgs(t *testing.T) {
	base := func() ClusterArgs {
		return ClusterArgs{Name: "c", Kind: "swarm", SSH: &SSHArgs{User: "root", Port: 22}, Pools: []PoolArgs{
			{Name: "managers", Provider: "docker", Role: "manager", Count: 1},
			{Name: "workers", Provider: "docker", Role: "worker", Count: 2},
		}}
	}
	kubeadm := func() ClusterArgs {
		a := base()
		a.Kind = "kubeadm"
		a.Kubernetes = &KubernetesArgs{Version: "v1.33.1", Artifacts: &KubernetesArtifactsArgs{Source: "build"},
			PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12"}
		a.Pools[1].Taints = []string{"dedicated=gpu:NoSchedule"}
		return a
	}
	tests := []struct {
		name   string
		kube   bool // both sides are a kubeadm cluster
		change func(a *ClusterArgs)
		want   map[string]p.DiffKind
		notes  int
	}{
		{"nothing", false, func(*ClusterArgs) {}, map[string]p.DiffKind{}, 0},
		{"scale workers", false, func(a *ClusterArgs) { a.Pools[1].Count = 3 }, map[string]p.DiffKind{"pools[1].count": p.Update}, 0},
		{"rename", false, func(a *ClusterArgs) { a.Name = "d" }, map[string]p.DiffKind{"name": p.UpdateReplace}, 0},
		{"kind", false, func(a *ClusterArgs) { a.Kind = "k3s" }, map[string]p.DiffKind{"kind": p.UpdateReplace}, 0},
		{"ssh user", false, func(a *ClusterArgs) { a.SSH.User = "ops" }, map[string]p.DiffKind{"ssh.user": p.UpdateReplace}, 0},
		{"login key", false, func(a *ClusterArgs) { a.SSH.PrivateKey = "k" }, map[string]p.DiffKind{"ssh.privateKey": p.UpdateReplace}, 0},
		{"bastion", false, func(a *ClusterArgs) { a.SSH.Bastion = &BastionArgs{Host: "j", HostKey: "k"} }, map[string]p.DiffKind{"ssh.bastion": p.Update}, 0},
		{"pool moves provider", false, func(a *ClusterArgs) { a.Pools[1].Provider = "aws" }, map[string]p.DiffKind{"pools[1].provider": p.Update}, 1},
		{"pool changes role", false, func(a *ClusterArgs) { a.Pools[1].Role = "manager" }, map[string]p.DiffKind{"pools[1].role": p.Update}, 1},
		{"labels", false, func(a *ClusterArgs) { a.Pools[1].Labels = map[string]string{"x": "y"} }, map[string]p.DiffKind{"pools[1].labels": p.Update}, 1},
		{"settings", false, func(a *ClusterArgs) { a.Pools[1].Settings = map[string]any{"cpus": 1.0} }, map[string]p.DiffKind{"pools[1].settings": p.Update}, 1},
		{"empty settings are no settings", false, func(a *ClusterArgs) { a.Pools[1].Settings = map[string]any{} }, map[string]p.DiffKind{}, 0},
		{"pool added", false, func(a *ClusterArgs) {
			a.Pools = append(a.Pools, PoolArgs{Name: "edge", Provider: "docker", Role: "worker", Count: 1})
		}, map[string]p.DiffKind{"pools[2]": p.Add}, 0},
		{"pool removed", false, func(a *ClusterArgs) { a.Pools = a.Pools[:1] }, map[string]p.DiffKind{"pools[1]": p.Delete}, 0},
		{"pool replaced by another", false, func(a *ClusterArgs) { a.Pools[1].Name = "edge" }, map[string]p.DiffKind{"pools[1]": p.Update}, 0},
		{"pools reordered", false, func(a *ClusterArgs) { a.Pools[0], a.Pools[1] = a.Pools[1], a.Pools[0] }, map[string]p.DiffKind{}, 0},
		{"swarm to kubeadm", false, func(a *ClusterArgs) { a.Kind = "kubeadm"; a.Kubernetes = kubeadm().Kubernetes },
			map[string]p.DiffKind{"kind": p.UpdateReplace}, 0},
		{"kubeadm unchanged", true, func(*ClusterArgs) {}, map[string]p.DiffKind{}, 0},
		{"kubernetes version", true, func(a *ClusterArgs) { a.Kubernetes.Version = "v1.34.0" },
			map[string]p.DiffKind{"kubernetes.version": p.UpdateReplace}, 0},
		{"kubernetes endpoint", true, func(a *ClusterArgs) { a.Kubernetes.Endpoint = "api.example.com" },
			map[string]p.DiffKind{"kubernetes.endpoint": p.UpdateReplace}, 0},
		{"pod range", true, func(a *ClusterArgs) { a.Kubernetes.PodCIDR = "10.32.0.0/16" },
			map[string]p.DiffKind{"kubernetes.podCidr": p.UpdateReplace}, 0},
		{"service range", true, func(a *ClusterArgs) { a.Kubernetes.ServiceCIDR = "10.33.0.0/16" },
			map[string]p.DiffKind{"kubernetes.serviceCidr": p.UpdateReplace}, 0},
		{"artifacts source", true, func(a *ClusterArgs) { a.Kubernetes.Artifacts = &KubernetesArtifactsArgs{Source: "release"} },
			map[string]p.DiffKind{"kubernetes.artifacts": p.Update}, 1},
		{"images", true, func(a *ClusterArgs) { a.Kubernetes.Images = []string{"app.tar"} },
			map[string]p.DiffKind{"kubernetes.images": p.Update}, 1},
		{"taints", true, func(a *ClusterArgs) { a.Pools[1].Taints = append(a.Pools[1].Taints, "spot:PreferNoSchedule") },
			map[string]p.DiffKind{"pools[1].taints": p.Update}, 1},
		{"taints removed", true, func(a *ClusterArgs) { a.Pools[1].Taints = nil },
			map[string]p.DiffKind{"pools[1].taints": p.Update}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prior := base
			if tt.kube {
				prior = kubeadm
			}
			next := prior()
			tt.change(&next)
			d := diffArgs(prior(), next)
			got := map[string]p.DiffKind{}
			for k, v := range d.props {
				if !v.InputDiff {
					t.Errorf("%s: not an input diff", k)
				}
				got[k] = v.Kind
			}
			if len(got) != len(tt.want) {
				t.Fatalf("diff %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("diff %v, want %v", got, tt.want)
				}
			}
			if n := len(d.notes(ClusterState{})); n != tt.notes {
				t.Fatalf("%d notes, want %d", n, tt.notes)
			}
		})
	}
}

// TestDefaultsMatchLoader: the defaults Check fills in are the plan
// loader's, so what Diff compares is what the engine applies.
func TestDefaultsMatchLoader(t *testing.T) {
	for _, tt := range []struct {
		kind       string
		kubernetes *KubernetesArgs
	}{
		{"", nil},
		{"kubeadm", nil},
		{"kubeadm", &KubernetesArgs{Endpoint: "api.example.com"}},
		{"kubeadm", &KubernetesArgs{Artifacts: &KubernetesArtifactsArgs{URL: "https://mirror.example.com"}}},
	} {
		args := ClusterArgs{Name: "edge", Kind: tt.kind, Kubernetes: tt.kubernetes,
			SSH:   &SSHArgs{User: "ops", Bastion: &BastionArgs{Host: "jump", HostKey: testHostKey}},
			Pools: []PoolArgs{{Name: "managers", Provider: "docker", Role: "manager", Count: 1}, {Name: "workers", Provider: "docker", Count: 2}}}
		if tt.kubernetes != nil && tt.kubernetes.Artifacts != nil {
			tt.kubernetes.Artifacts.Source = "release" // the loader reads url only for release
		}
		pl, failures, err := loadPlan(args, builtin.Registry())
		if err != nil || len(failures) > 0 {
			t.Fatalf("loadPlan %s: %v %+v", tt.kind, err, failures)
		}
		got := withDefaults(args)
		b := got.SSH.Bastion
		if got.Kind != pl.Cluster.Kind || got.SSH.User != pl.SSH.User || got.SSH.Port != pl.SSH.Port ||
			b.Port != pl.SSH.Bastion.Port || b.User != pl.SSH.Bastion.User ||
			got.Pools[0].Role != string(pl.Pools[0].Role) || got.Pools[1].Role != string(pl.Pools[1].Role) {
			t.Fatalf("defaults %+v %+v, loader %+v %+v", got, *b, pl, *pl.SSH.Bastion)
		}
		if pl.Kubernetes == nil {
			if got.Kubernetes != nil {
				t.Fatalf("defaults give a %s cluster kubernetes %+v", got.Kind, *got.Kubernetes)
			}
			continue
		}
		k, a, lk := got.Kubernetes, got.Kubernetes.Artifacts, pl.Kubernetes
		if k.Version != lk.Version || a.Source != lk.Artifacts.Source || a.URL != lk.Artifacts.URL || k.Endpoint != lk.Endpoint ||
			k.PodCIDR != lk.PodCIDR || k.ServiceCIDR != lk.ServiceCIDR {
			t.Fatalf("defaults %+v %+v, loader %+v", *k, *a, *lk)
		}
		if tt.kubernetes != nil && (tt.kubernetes.Version != "" || tt.kubernetes.PodCIDR != "") {
			t.Fatalf("withDefaults changed the caller's inputs: %+v", *tt.kubernetes)
		}
	}
}

const testHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

// TestCheckUnknownInputs: in a preview where some inputs are still
// unknown, Check fills in defaults and reports nothing it cannot know yet.
func TestCheckUnknownInputs(t *testing.T) {
	s := server(t)
	in := props(map[string]any{"pools": []any{pool("managers", "docker", "manager", 1)}})
	workers := props(map[string]any{"name": "workers", "provider": "docker"}).Set("count", property.New(property.Computed))
	in = in.Set("pools", property.New([]property.Value{in.Get("pools").AsArray().Get(0), property.New(workers)}))
	resp, err := s.Check(p.CheckRequest{Urn: clusterURN("later"), Inputs: in})
	if err != nil || len(resp.Failures) > 0 {
		t.Fatalf("Check: %v %+v", err, resp.Failures)
	}
	if u := resp.Inputs.Get("ssh").AsMap().Get("user"); u.AsString() != "root" {
		t.Errorf("ssh.user = %v, want the default root", u)
	}
	if c := resp.Inputs.Get("pools").AsArray().Get(1).AsMap().Get("count"); !c.IsComputed() {
		t.Errorf("pools[1].count = %v, want it still unknown", c)
	}
}

// TestCheckSettingsLikeValidate: for every provider, a pool's bad settings
// come back on pools[i].settings.<key> with the message `provision
// validate` prints for the same plan (the loader's golden cases in
// plans/testdata/invalid/settings-*.yaml), checked with no credentials.
func TestCheckSettingsLikeValidate(t *testing.T) {
	s := server(t)
	tests := []struct {
		provider, prop, reason string
	}{
		{"aws", "pools[0].settings.instance_type", "pools[0].settings.instance_type: expected a string, got number 7"},
		{"aws", "pools[1].settings.amii", `pools[1].settings: unknown setting "amii" (did you mean "ami"?)`},
		{"gcp", "pools[0].settings.machine_type", "pools[0].settings.machine_type: expected a string, got number 7"},
		{"gcp", "pools[0].settings.disk", `pools[0].settings: unknown setting "disk" (valid settings: batch_size, disk_gb, image, machine_type, network, project, public_ip, subnetwork, zone)`},
		{"openstack", "pools[0].settings.flavor", "pools[0].settings.flavor: expected a string, got number 7"},
		{"openstack", "pools[0].settings.security_group", `pools[0].settings: unknown setting "security_group" (did you mean "security_groups"?)`},
		{"docker", "pools[0].settings.image", "pools[0].settings.image: expected a string, got number 7"},
		{"docker", "pools[0].settings.memroy", `pools[0].settings: unknown setting "memroy" (did you mean "memory"?)`},
		{"static", "pools[0].settings.hosts[0].port", "pools[0].settings.hosts[0].port: 70000 is out of range (use a TCP port from 1 to 65535)"},
		{"static", "pools[0].settings.hosts[1].hostkey", `pools[0].settings.hosts[1]: unknown setting "hostkey" (did you mean "host_key"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.provider+" "+tt.prop, func(t *testing.T) {
			file := filepath.Join("..", "..", "plans", "testdata", "invalid", "settings-"+tt.provider+".yaml")
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var plan struct {
				Cluster struct{ Name string } `yaml:"cluster"`
				Pools   []map[string]any      `yaml:"pools"`
			}
			if err := yaml.Unmarshal(data, &plan); err != nil {
				t.Fatal(err)
			}
			pools := make([]any, len(plan.Pools))
			for i, pool := range plan.Pools {
				pools[i] = pool
			}
			resp, err := s.Check(p.CheckRequest{Urn: clusterURN("c1"), Inputs: props(map[string]any{"name": plan.Cluster.Name, "pools": pools})})
			if err != nil {
				t.Fatalf("Check error: %v", err)
			}
			found := false
			for _, f := range resp.Failures {
				found = found || f.Property == tt.prop && f.Reason == tt.reason
			}
			if !found {
				t.Errorf("failures %+v: none on %q reading %q", resp.Failures, tt.prop, tt.reason)
			}

			// Every problem validate reports, Check reports: same message,
			// on the property of the same path.
			_, lerr := plans.Load(file, plans.Options{Providers: builtin.Registry()})
			var list plans.ErrorList
			if !errors.As(lerr, &list) {
				t.Fatalf("Load(%s) = %v, want an ErrorList", file, lerr)
			}
			if len(list) != len(resp.Failures) {
				t.Errorf("validate reports %d problems, Check %d: %v\n%+v", len(list), len(resp.Failures), list, resp.Failures)
			}
			for _, e := range list {
				want := p.CheckFailure{Property: e.Path, Reason: e.Msg}
				if e.Hint != "" {
					want.Reason += " (" + e.Hint + ")"
				}
				if !slices.Contains(resp.Failures, want) {
					t.Errorf("validate's %v is not among Check's failures %+v", e, resp.Failures)
				}
			}
		})
	}
}

// TestInputProperty: plan paths become the input properties they came from.
func TestInputProperty(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"":                                    "",
		"version":                             "",
		"cluster.name":                        "name",
		"cluster.kind":                        "kind",
		"ssh.bastion.host_key":                "ssh.bastion.hostKey",
		"kubernetes.pod_cidr":                 "kubernetes.podCidr",
		"kubernetes.images[0]":                "kubernetes.images[0]",
		"pools[1].settings.instance_type":     "pools[1].settings.instance_type",
		"pools[0].settings.hosts[0].host_key": "pools[0].settings.hosts[0].host_key",
		"pools[2].labels.team_name":           "pools[2].labels.team_name",
	} {
		if got := inputProperty(path); got != want {
			t.Errorf("inputProperty(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestMustPlanSkipsSettings: operations after Check (a destroy of a cluster
// created by an older provision) are not refused by a settings rule, while
// Check itself refuses the same inputs.
func TestMustPlanSkipsSettings(t *testing.T) {
	t.Parallel()
	args := withDefaults(ClusterArgs{Name: "old", Pools: []PoolArgs{
		{Name: "managers", Provider: "docker", Role: "manager", Count: 1, Settings: map[string]any{"imag": "x"}}}})
	if _, err := mustPlan(args, builtin.Registry()); err != nil {
		t.Fatalf("mustPlan: %v", err)
	}
	if _, failures, err := loadPlan(args, builtin.Registry()); err != nil || len(failures) != 1 || failures[0].Property != "pools[0].settings.imag" {
		t.Fatalf("loadPlan = %+v, %v; want the unknown setting on pools[0].settings.imag", failures, err)
	}
}
