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
