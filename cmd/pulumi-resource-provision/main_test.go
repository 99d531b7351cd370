package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"testing"

	p "github.com/pulumi/pulumi-go-provider"

	"github.com/provisionhq/provision/pulumi/provider"
)

var update = flag.Bool("update", false, "rewrite schema.json from the provider")

// TestSchema keeps schema.json, the schema the plugin serves, committed and
// current: SDKs and docs are generated from it. go test -run TestSchema -update
// rewrites it after a deliberate change.
func TestSchema(t *testing.T) {
	prov, err := provider.New(provider.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := p.GetSchema(t.Context(), provider.Name, version, prov)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile("schema.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatalf("%v (run go test -run TestSchema -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("schema.json is not the schema the provider serves; after a deliberate change run go test ./cmd/pulumi-resource-provision -run TestSchema -update\n%s", firstDiff(want, got))
	}
	// The parts programs depend on, so an -update cannot quietly drop them.
	res, ok := spec.Resources["provision:index:Cluster"]
	if !ok {
		t.Fatalf("no provision:index:Cluster resource; resources: %v", spec.Resources)
	}
	for _, out := range []string{"nodes", "managerAddress", "privateKey", "publicKey", "workerJoinToken", "managerJoinToken", "kubeconfig", "state"} {
		if _, ok := res.Properties[out]; !ok {
			t.Errorf("output %q missing", out)
		}
	}
	for _, secret := range []string{"privateKey", "workerJoinToken", "managerJoinToken", "kubeconfig"} {
		if !res.Properties[secret].Secret {
			t.Errorf("output %q is not marked secret", secret)
		}
	}
	if res.InputProperties["pools"].Items == nil {
		t.Errorf("input pools is not a list")
	}
	if ref := res.InputProperties["kubernetes"].Ref; ref != "#/types/provision:index:Kubernetes" {
		t.Errorf("input kubernetes refers to %q, want the Kubernetes type", ref)
	}
	k8s := spec.Types["provision:index:Kubernetes"].Properties
	for _, in := range []string{"version", "artifacts", "endpoint", "podCidr", "serviceCidr", "images"} {
		if _, ok := k8s[in]; !ok {
			t.Errorf("kubernetes input %q missing", in)
		}
	}
	if taints := spec.Types["provision:index:Pool"].Properties["taints"]; taints.Items == nil {
		t.Errorf("pool input taints is not a list")
	}
}

// firstDiff shows the first line where two texts differ.
func firstDiff(want, got []byte) string {
	w, g := bytes.Split(want, []byte("\n")), bytes.Split(got, []byte("\n"))
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl []byte
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if !bytes.Equal(wl, gl) {
			return fmt.Sprintf("line %d:\n  committed: %s\n  served:    %s", i+1, wl, gl)
		}
	}
	return ""
}
