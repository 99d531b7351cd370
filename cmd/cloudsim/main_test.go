package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/provisionhq/provision/cloudsim"
)

func TestPerCloud(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec    string
		want    map[string]string
		wantErr string
	}{
		{spec: "", want: map[string]string{}},
		{spec: "aws=2,gcp=10", want: map[string]string{"aws": "2", "gcp": "10"}},
		{spec: "openstack", want: map[string]string{"openstack": "true"}},
		{spec: "azure=1", wantErr: `unknown cloud "azure"`},
	}
	for _, tt := range tests {
		got, err := perCloud(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("perCloud(%q) err = %v, want %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("perCloud(%q) = %v, %v; want %v", tt.spec, got, err, tt.want)
		}
	}
}

// The environment points each SDK at its emulator through the clouds'
// standard variables only.
func TestEnvironment(t *testing.T) {
	t.Parallel()
	env := environment(func(cloud string) string { return "http://sim-" + cloud })
	for _, want := range []string{
		"AWS_ENDPOINT_URL=http://sim-aws\n",
		"PROVISION_GCP_ENDPOINT=http://sim-gcp ",
		"OS_AUTH_URL=http://sim-openstack/identity/v3 ",
	} {
		if !strings.Contains(env, want) {
			t.Errorf("environment lacks %q:\n%s", want, env)
		}
	}
}

// TestFaultsFor: each per-cloud flag lands on its cloud only.
func TestFaultsFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		c       config
		check   func(map[string]cloudsim.Faults) bool
		wantErr string
	}{
		{name: "spot capacity on aws only", c: config{noSpotCapacity: "aws"},
			check: func(f map[string]cloudsim.Faults) bool {
				return f["aws"].SpotNoCapacity && !f["aws"].NoCapacity && !f["gcp"].SpotNoCapacity
			}},
		{name: "quota and capacity", c: config{quota: "gcp=3", noCapacity: "openstack"},
			check: func(f map[string]cloudsim.Faults) bool {
				return f["gcp"].InstanceQuota == 3 && f["aws"].InstanceQuota == 0 && f["openstack"].NoCapacity
			}},
		{name: "openstack has no spot", c: config{noSpotCapacity: "openstack"}, wantErr: "openstack has no spot instances"},
		{name: "bad quota", c: config{quota: "aws=many"}, wantErr: `--quota aws="many"`},
		{name: "unknown cloud", c: config{noSpotCapacity: "azure"}, wantErr: `--no-spot-capacity: unknown cloud "azure"`},
	}
	for _, tt := range tests {
		got, err := faultsFor(tt.c)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !tt.check(got) {
			t.Errorf("%s: faults = %+v, %v", tt.name, got, err)
		}
	}
}
