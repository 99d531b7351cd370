package main

import (
	"reflect"
	"strings"
	"testing"
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
