package plans

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/builtin"
)

// TestErrorPath: every error about a value names it by path, so a program
// (the Pulumi provider) can map it to its own input without positions.
func TestErrorPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want []string
	}{
		{"settings-aws.yaml", []string{"pools[0].settings.instance_type", "pools[1].settings.ami", "pools[1].settings.amii", "pools[1].settings.root_volume_gb"}},
		{"settings-static.yaml", []string{"pools[0].settings.hosts[0].port", "pools[0].settings.hosts[0].host_key", "pools[0].settings.hosts[1].host_key", "pools[0].settings.hosts[1].hostkey"}},
		{"settings-unknown-provider.yaml", []string{"pools[0].provider"}},
		{"negative-count.yaml", []string{"pools[0].count"}},
		{"no-pools.yaml", []string{"pools"}},
		{"empty.yaml", []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			_, err := Load(filepath.Join("testdata", "invalid", tt.file), Options{Providers: builtin.Registry()})
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Load = %v, want an ErrorList", err)
			}
			var got []string
			for _, e := range list {
				got = append(got, e.Path)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("paths %q, want %q\n%v", got, tt.want, err)
			}
		})
	}
}

// TestFromValues: a plan built in code gets Parse's defaults and checks,
// provider settings included, and errors that name a path but no position.
func TestFromValues(t *testing.T) {
	t.Parallel()
	opts := Options{Providers: builtin.Registry()}
	managers := Pool{Name: "managers", Provider: "docker", Role: providers.RoleManager, Count: 1}

	p, err := FromValues(Plan{Cluster: Cluster{Name: "dev"}, Pools: []Pool{managers, {Name: "workers", Provider: "docker", Count: 2}}}, opts)
	if err != nil {
		t.Fatalf("FromValues of a valid plan: %v", err)
	}
	if p.Version != Version || p.Cluster.Kind != "swarm" || p.SSH.User != "root" || p.SSH.Port != 22 ||
		p.State.Backend != "file" || p.Pools[1].Role != providers.RoleWorker {
		t.Errorf("defaults not filled in: %+v", p)
	}

	tests := []struct {
		name string
		plan Plan
		want []*Error
	}{
		{"bad setting", Plan{Cluster: Cluster{Name: "dev"}, Pools: []Pool{{Name: "managers", Provider: "aws", Role: providers.RoleManager, Count: 1,
			Settings: providers.Settings{"instance_type": 7.0, "ami": "ami-1", "amii": "x"}}}},
			[]*Error{
				{Path: "pools[0].settings.amii", Msg: `pools[0].settings: unknown setting "amii"`, Hint: `did you mean "ami"?`},
				{Path: "pools[0].settings.instance_type", Msg: "pools[0].settings.instance_type: expected a string, got number 7"},
			}},
		{"duplicate pool", Plan{Cluster: Cluster{Name: "dev"}, Pools: []Pool{managers, managers}},
			[]*Error{{Path: "pools[1].name", Msg: `pools[1].name: duplicate pool "managers" (first defined as pools[0])`,
				Hint: "pool names must be unique: rename one of them, or merge their counts"}}},
		{"missing name", Plan{Pools: []Pool{managers}},
			[]*Error{{Path: "cluster.name", Msg: "cluster.name: required", Hint: `name the cluster, e.g. "name: prod": lowercase letters, digits and "-"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := FromValues(tt.plan, opts)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("FromValues = %v, want an ErrorList", err)
			}
			if !reflect.DeepEqual([]*Error(list), tt.want) {
				t.Errorf("errors:\n%#v\nwant:\n%#v", list, tt.want)
			}
			if got, want := list[0].Error(), tt.want[0].Msg+"\n\thint: "+tt.want[0].Hint; tt.want[0].Hint != "" && got != want {
				t.Errorf("Error() = %q, want %q: no file position to print", got, want)
			}
		})
	}
}
