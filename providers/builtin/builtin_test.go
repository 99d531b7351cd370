package builtin

import (
	"slices"
	"testing"

	"github.com/provisionhq/provision/providers"
)

func TestRegistry(t *testing.T) {
	r := Registry()
	if got := r.Names(); !slices.Equal(got, []string{"docker", "static"}) {
		t.Fatalf("Names() = %v", got)
	}
	for _, name := range r.Names() {
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
