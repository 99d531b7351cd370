package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

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
		{name: "server errors and resets per cloud", c: config{serverErrors: "aws=0.1,gcp=0.2", resets: "aws=0.05", faults: cloudsim.Faults{AfterWork: 0.5}},
			check: func(f map[string]cloudsim.Faults) bool {
				return f["aws"].ServerErrorRate == 0.1 && f["gcp"].ServerErrorRate == 0.2 && f["openstack"].ServerErrorRate == 0 &&
					f["aws"].ResetRate == 0.05 && f["gcp"].ResetRate == 0 && f["aws"].AfterWork == 0.5 && f["openstack"].AfterWork == 0.5
			}},
		{name: "one value for every cloud", c: config{serverErrors: "0.1", resets: "0.02", latency: "200ms"},
			check: func(f map[string]cloudsim.Faults) bool {
				for _, cloud := range clouds {
					if f[cloud].ServerErrorRate != 0.1 || f[cloud].ResetRate != 0.02 || f[cloud].Latency != 200*time.Millisecond {
						return false
					}
				}
				return true
			}},
		{name: "latency per cloud", c: config{latency: "aws=50ms,openstack=1s"},
			check: func(f map[string]cloudsim.Faults) bool {
				return f["aws"].Latency == 50*time.Millisecond && f["gcp"].Latency == 0 && f["openstack"].Latency == time.Second
			}},
		{name: "bad server error rate", c: config{serverErrors: "gcp=2"}, wantErr: `--server-errors gcp="2": want a fraction from 0 to 1`},
		{name: "bare cloud is no rate", c: config{resets: "aws"}, wantErr: `--resets: "aws" names clouds without values`},
		{name: "unknown cloud in resets", c: config{resets: "azure=0.1"}, wantErr: `--resets: unknown cloud "azure"`},
		{name: "invisible for every cloud", c: config{invisible: "2s"},
			check: func(f map[string]cloudsim.Faults) bool {
				return f["aws"].InvisibleFor == 2*time.Second && f["gcp"].InvisibleFor == 2*time.Second && f["openstack"].InvisibleFor == 2*time.Second
			}},
		{name: "invisible on aws only", c: config{invisible: "aws=1s"},
			check: func(f map[string]cloudsim.Faults) bool {
				return f["aws"].InvisibleFor == time.Second && f["gcp"].InvisibleFor == 0 && f["openstack"].InvisibleFor == 0
			}},
		{name: "bad invisible", c: config{invisible: "aws=later"}, wantErr: `--invisible aws="later"`},
		{name: "bad latency", c: config{latency: "openstack=soon"}, wantErr: `--latency openstack="soon"`},
		{name: "negative latency", c: config{latency: "-1s"}, wantErr: `--latency aws="-1s"`},
		{name: "more faults than requests", c: config{serverErrors: "0.7", resets: "aws=0.5"}, wantErr: "--server-errors and --resets of aws add up to more than every request"},
		{name: "after-work share", c: config{faults: cloudsim.Faults{AfterWork: 1.5}}, wantErr: "--after-work 1.5"},
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
