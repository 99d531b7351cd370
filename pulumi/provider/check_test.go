package provider

import (
	"strings"
	"testing"

	"github.com/blang/semver"
	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/integration"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/property"

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
		{"kind not implemented", map[string]any{"kind": "k3s", "pools": []any{manager}},
			"kind", "cluster.kind: k3s is not implemented yet"},
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
			"pools[0].settings", `pool "managers" settings:`},
		{"empty label key", map[string]any{"pools": []any{
			map[string]any{"name": "managers", "provider": "docker", "role": "manager", "count": 1, "labels": map[string]any{"": "x"}}}},
			"pools[0].labels", "label keys must not be empty"},
		{"bastion without host key", map[string]any{"ssh": map[string]any{"bastion": map[string]any{"host": "jump.example.com"}}, "pools": []any{manager}},
			"ssh.bastion", "ssh.bastion.host_key: required (the bastion's public host key"},
		{"bastion host key not a key", map[string]any{"ssh": map[string]any{"bastion": map[string]any{"host": "jump.example.com", "hostKey": "nope"}}, "pools": []any{manager}},
			"ssh.bastion.hostKey", "ssh.bastion.host_key: not an SSH public key"},
		{"port out of range", map[string]any{"ssh": map[string]any{"port": 70000}, "pools": []any{manager}},
			"ssh.port", "ssh.port: 70000 is out of range"},
		{"private key not a key", map[string]any{"ssh": map[string]any{"privateKey": "-----BEGIN NOTHING-----"}, "pools": []any{manager}},
			"ssh.privateKey", "not a private key in OpenSSH or PEM form"},
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

// TestRenderPlanMatchesValidate: the plan the inputs become is the plan a
// user would write, so Check's messages are `provision validate`'s.
func TestRenderPlanMatchesValidate(t *testing.T) {
	args := ClusterArgs{Name: "edge", SSH: &SSHArgs{User: "ops", Port: 2222}, Pools: []PoolArgs{
		{Name: "managers", Provider: "docker", Role: "manager", Count: 1},
		{Name: "workers", Provider: "docker", Count: 2, Labels: map[string]string{"tier": "a \"quoted\"\nvalue"},
			Settings: map[string]any{"cpus": 1.5, "memory": "1g"}},
	}}
	text, paths := renderPlan(args)
	if n := strings.Count(string(text), "\n"); n != len(paths) {
		t.Fatalf("%d lines, %d paths", n, len(paths))
	}
	pl, err := plans.Parse("plan.yaml", text, plans.Options{Providers: builtin.Registry()})
	if err != nil {
		t.Fatalf("rendered plan does not load: %v\n%s", err, text)
	}
	w := pl.Pools[1]
	if pl.Cluster.Name != "edge" || pl.SSH.User != "ops" || pl.SSH.Port != 2222 || w.Labels["tier"] != "a \"quoted\"\nvalue" ||
		w.Settings["cpus"] != 1.5 || w.Settings["memory"] != "1g" || w.Count != 2 || w.Role != "worker" {
		t.Fatalf("plan differs from the inputs: %+v %+v\n%s", pl, w, text)
	}
}

func TestDiffArgs(t *testing.T) {
	base := func() ClusterArgs {
		return ClusterArgs{Name: "c", Kind: "swarm", SSH: &SSHArgs{User: "root", Port: 22}, Pools: []PoolArgs{
			{Name: "managers", Provider: "docker", Role: "manager", Count: 1},
			{Name: "workers", Provider: "docker", Role: "worker", Count: 2},
		}}
	}
	tests := []struct {
		name   string
		change func(a *ClusterArgs)
		want   map[string]p.DiffKind
		notes  int
	}{
		{"nothing", func(*ClusterArgs) {}, map[string]p.DiffKind{}, 0},
		{"scale workers", func(a *ClusterArgs) { a.Pools[1].Count = 3 }, map[string]p.DiffKind{"pools[1].count": p.Update}, 0},
		{"rename", func(a *ClusterArgs) { a.Name = "d" }, map[string]p.DiffKind{"name": p.UpdateReplace}, 0},
		{"kind", func(a *ClusterArgs) { a.Kind = "k3s" }, map[string]p.DiffKind{"kind": p.UpdateReplace}, 0},
		{"ssh user", func(a *ClusterArgs) { a.SSH.User = "ops" }, map[string]p.DiffKind{"ssh.user": p.UpdateReplace}, 0},
		{"login key", func(a *ClusterArgs) { a.SSH.PrivateKey = "k" }, map[string]p.DiffKind{"ssh.privateKey": p.UpdateReplace}, 0},
		{"bastion", func(a *ClusterArgs) { a.SSH.Bastion = &BastionArgs{Host: "j", HostKey: "k"} }, map[string]p.DiffKind{"ssh.bastion": p.Update}, 0},
		{"pool moves provider", func(a *ClusterArgs) { a.Pools[1].Provider = "aws" }, map[string]p.DiffKind{"pools[1].provider": p.Update}, 1},
		{"pool changes role", func(a *ClusterArgs) { a.Pools[1].Role = "manager" }, map[string]p.DiffKind{"pools[1].role": p.Update}, 1},
		{"labels", func(a *ClusterArgs) { a.Pools[1].Labels = map[string]string{"x": "y"} }, map[string]p.DiffKind{"pools[1].labels": p.Update}, 1},
		{"settings", func(a *ClusterArgs) { a.Pools[1].Settings = map[string]any{"cpus": 1.0} }, map[string]p.DiffKind{"pools[1].settings": p.Update}, 1},
		{"empty settings are no settings", func(a *ClusterArgs) { a.Pools[1].Settings = map[string]any{} }, map[string]p.DiffKind{}, 0},
		{"pool added", func(a *ClusterArgs) {
			a.Pools = append(a.Pools, PoolArgs{Name: "edge", Provider: "docker", Role: "worker", Count: 1})
		}, map[string]p.DiffKind{"pools[2]": p.Add}, 0},
		{"pool removed", func(a *ClusterArgs) { a.Pools = a.Pools[:1] }, map[string]p.DiffKind{"pools[1]": p.Delete}, 0},
		{"pool replaced by another", func(a *ClusterArgs) { a.Pools[1].Name = "edge" }, map[string]p.DiffKind{"pools[1]": p.Update}, 0},
		{"pools reordered", func(a *ClusterArgs) { a.Pools[0], a.Pools[1] = a.Pools[1], a.Pools[0] }, map[string]p.DiffKind{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := base()
			tt.change(&next)
			d := diffArgs(base(), next)
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
	args := ClusterArgs{Name: "edge", SSH: &SSHArgs{User: "ops", Bastion: &BastionArgs{Host: "jump", HostKey: testHostKey}},
		Pools: []PoolArgs{{Name: "managers", Provider: "docker", Role: "manager", Count: 1}, {Name: "workers", Provider: "docker", Count: 2}}}
	pl, failures, err := loadPlan(args, builtin.Registry())
	if err != nil || len(failures) > 0 {
		t.Fatalf("loadPlan: %v %+v", err, failures)
	}
	got := withDefaults(args)
	b := got.SSH.Bastion
	if got.Kind != pl.Cluster.Kind || got.SSH.User != pl.SSH.User || got.SSH.Port != pl.SSH.Port ||
		b.Port != pl.SSH.Bastion.Port || b.User != pl.SSH.Bastion.User ||
		got.Pools[0].Role != string(pl.Pools[0].Role) || got.Pools[1].Role != string(pl.Pools[1].Role) {
		t.Fatalf("defaults %+v %+v, loader %+v %+v", got, *b, pl, *pl.SSH.Bastion)
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
