package gcp

import (
	"errors"
	"testing"

	"github.com/provisionhq/provision/providers"
)

// TestProjectFromEnvironment: a plan may leave the project to
// $GOOGLE_CLOUD_PROJECT, so the static check accepts it missing; Create,
// which knows the environment, refuses it only when neither names one.
func TestProjectFromEnvironment(t *testing.T) {
	t.Parallel()
	set := providers.Settings{"zone": "europe-west1-b", "machine_type": "e2-medium", "image": "debian-12"}
	if errs := CheckSettings(set); len(errs) > 0 {
		t.Fatalf("CheckSettings without a project = %v, want none", errs)
	}
	if got, err := decodeSettings(set, "from-env"); err != nil || got.Project != "from-env" {
		t.Fatalf("decodeSettings with $%s = %+v, %v", EnvProject, got, err)
	}
	if _, err := decodeSettings(set, ""); !errors.Is(err, providers.ErrInvalidSpec) {
		t.Fatalf("decodeSettings with no project anywhere = %v, want ErrInvalidSpec", err)
	}
}

// TestMachineTypeSetting: machine_type is a name or a zonal URL of the
// pool's own zone; anything else is named at the setting, before a call.
func TestMachineTypeSetting(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		mt string
		ok bool
	}{
		{"e2-medium", true},
		{"zones/europe-west1-b/machineTypes/e2-medium", true},
		{"projects/p/zones/europe-west1-b/machineTypes/e2-medium", true},
		{"https://compute.googleapis.com/compute/v1/projects/p/zones/europe-west1-b/machineTypes/e2-medium", true},
		{"zones/us-central1-a/machineTypes/e2-medium", false},
		{"machineTypes/e2-medium", false},
	} {
		errs := CheckSettings(providers.Settings{"zone": "europe-west1-b", "machine_type": c.mt, "image": "debian-12"})
		named := len(errs) == 1 && errs[0].Key == "machine_type"
		if c.ok != (len(errs) == 0) || (!c.ok && !named) {
			t.Errorf("machine_type %q: %v", c.mt, errs)
		}
	}
}

func TestNetworkURLs(t *testing.T) {
	t.Parallel()
	s := settings{Zone: "europe-west1-b", Network: "prod", Subnetwork: "prod-eu"}
	if got := s.networkURL(); got != "global/networks/prod" {
		t.Errorf("network URL %q", got)
	}
	if got := s.subnetworkURL(); got != "regions/europe-west1/subnetworks/prod-eu" {
		t.Errorf("subnetwork URL %q", got)
	}
	s = settings{Zone: "europe-west1-b", Network: "projects/host/global/networks/shared", Subnetwork: "projects/host/regions/europe-west1/subnetworks/eu"}
	if s.networkURL() != s.Network || s.subnetworkURL() != s.Subnetwork {
		t.Errorf("URLs changed: %q %q", s.networkURL(), s.subnetworkURL())
	}
}
