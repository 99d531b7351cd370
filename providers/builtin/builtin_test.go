package builtin

import (
	"slices"
	"testing"

	"github.com/provisionhq/provision/providers"
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
