package builtin

import (
	"slices"
	"testing"

	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/hostkey"
)

func TestRegistry(t *testing.T) {
	// Cloud providers build their API clients at construction: give them
	// an endpoint so no credential chain is consulted (nothing is called).
	t.Setenv("PROVISION_GCP_ENDPOINT", "http://127.0.0.1:9")
	r := Registry()
	if got := r.Names(); !slices.Equal(got, []string{"aws", "docker", "gcp", "openstack", "static"}) {
		t.Fatalf("Names() = %v", got)
	}
	// openstack authenticates at construction: it needs a Keystone.
	for _, name := range []string{"aws", "docker", "gcp", "static"} {
		p, err := r.New(t.Context(), name, providers.Env{Cluster: "c", Dir: t.TempDir()})
		if err != nil || p == nil {
			t.Fatalf("New(%s) = %v, %v", name, p, err)
		}
	}
	// Each call is independent: registering into one does not touch another.
	if Registry() == r {
		t.Fatal("Registry returned a shared instance")
	}
}

// TestRegistryChecksSettings: every built-in provider has a settings check
// in its entry, run without building the provider (openstack's constructor
// would need a Keystone): valid settings pass, a typo is named.
func TestRegistryChecksSettings(t *testing.T) {
	t.Parallel()
	k, err := hostkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	valid := map[string]providers.Settings{
		"aws":       {"instance_type": "t3.small", "ami": "ami-0abcdef1234567890", "root_volume_gb": 20.0},
		"docker":    {"image": "provision/node:dev", "cpus": 2, "memory": "1g"},
		"gcp":       {"project": "p", "zone": "europe-west1-b", "machine_type": "e2-medium", "image": "debian-12"},
		"openstack": {"flavor": "m1.small", "image": "debian-12", "networks": []any{"private"}},
		"static":    {"hosts": []any{map[string]any{"address": "10.0.0.5", "port": 2222, "host_key": k.Public}}},
	}
	r := Registry()
	for _, name := range r.Names() {
		set, ok := valid[name]
		if !ok {
			t.Fatalf("no valid settings for %s in this test", name)
		}
		if errs := r.CheckSettings(name, set); len(errs) > 0 {
			t.Errorf("CheckSettings(%s, %v) = %v, want none", name, set, errs)
		}
		typo := providers.Settings{"zzz_unknown": 1}
		errs := r.CheckSettings(name, typo)
		if !slices.ContainsFunc(errs, func(e providers.SettingError) bool { return e.Key == "zzz_unknown" && e.Unknown }) {
			t.Errorf("CheckSettings(%s, %v) = %v, want the unknown key named", name, typo, errs)
		}
	}
	if errs := r.CheckSettings("nowhere", providers.Settings{"x": 1}); errs != nil {
		t.Errorf("CheckSettings of an unknown provider = %v, want nothing (the loader reports the name)", errs)
	}
}

// TestRegistrySpot: the clouds whose providers send MachineSpec.Spot on
// (EC2 InstanceMarketOptions, GCE SPOT provisioning) say so; the others
// would ignore it, so the loader refuses spot pools on them.
func TestRegistrySpot(t *testing.T) {
	t.Parallel()
	r := Registry()
	for _, name := range r.Names() {
		want := name == "aws" || name == "gcp"
		if got := r.Spot(name); got != want {
			t.Errorf("Spot(%s) = %t, want %t", name, got, want)
		}
	}
}
