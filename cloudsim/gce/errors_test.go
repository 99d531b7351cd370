package gce

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/provisionhq/provision/cloudsim"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the emulator's answers")

// validInstance is an instances.insert body GCE accepts, as raw JSON built
// here (not with the client's encoder), so a test can break one field.
func validInstance() map[string]any {
	return map[string]any{
		"name":        "vm-1",
		"machineType": "zones/us-central1-a/machineTypes/e2-medium",
		"disks": []any{map[string]any{"boot": true, "autoDelete": true,
			"initializeParams": map[string]any{"sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}},
		"networkInterfaces": []any{map[string]any{"network": "global/networks/default",
			"accessConfigs": []any{map[string]any{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}}}},
	}
}

// validBulk is a bulkInsert body GCE accepts: a bare machine type name.
func validBulk() map[string]any {
	props := validInstance()
	delete(props, "name")
	props["machineType"] = "e2-medium"
	return map[string]any{
		"count": "2", "minCount": "2",
		"perInstanceProperties": map[string]any{"vm-1": map[string]any{"name": "vm-1"}, "vm-2": map[string]any{"name": "vm-2"}},
		"instanceProperties":    props,
	}
}

func nic(b map[string]any) map[string]any {
	return b["networkInterfaces"].([]any)[0].(map[string]any)
}

func disk(b map[string]any) map[string]any {
	return b["disks"].([]any)[0].(map[string]any)
}

// TestCreateErrorsAreGCEs: each invalid reference in a create gets GCE's
// own answer, byte for byte the shape googleapi parses: an HTTP error for
// what GCE refuses at once, a failed operation for what it refuses later.
// The goldens are reviewed by hand against GCE's documented and observed
// messages; -update rewrites them.
func TestCreateErrorsAreGCEs(t *testing.T) {
	insert := "/compute/v1/projects/p/zones/us-central1-a/instances"
	bulk := insert + "/bulkInsert"
	cases := []struct {
		name   string
		faults cloudsim.Faults
		path   string
		body   func() map[string]any
	}{
		{"machine-type-unknown", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			b["machineType"] = "zones/us-central1-a/machineTypes/e2-mega"
			return b
		}},
		{"machine-type-bare-name-on-insert", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			b["machineType"] = "e2-medium"
			return b
		}},
		{"machine-type-other-zone", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			b["machineType"] = "zones/europe-west1-b/machineTypes/e2-medium"
			return b
		}},
		{"bulk-machine-type-unknown", cloudsim.Faults{}, bulk, func() map[string]any {
			b := validBulk()
			b["instanceProperties"].(map[string]any)["machineType"] = "e2-mega"
			return b
		}},
		{"bulk-machine-type-url", cloudsim.Faults{}, bulk, func() map[string]any {
			b := validBulk()
			b["instanceProperties"].(map[string]any)["machineType"] = "zones/us-central1-a/machineTypes/e2-medium"
			return b
		}},
		{"image-family-unknown", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			disk(b)["initializeParams"].(map[string]any)["sourceImage"] = "projects/debian-cloud/global/images/family/debian-13"
			return b
		}},
		{"image-unknown", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			disk(b)["initializeParams"].(map[string]any)["sourceImage"] = "projects/debian-cloud/global/images/debian-12-bookworm-v19990101"
			return b
		}},
		{"image-malformed", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			disk(b)["initializeParams"].(map[string]any)["sourceImage"] = "debian-12"
			return b
		}},
		{"bulk-image-unknown", cloudsim.Faults{}, bulk, func() map[string]any {
			b := validBulk()
			disk(b["instanceProperties"].(map[string]any))["initializeParams"].(map[string]any)["sourceImage"] = "projects/my-project/global/images/golden"
			return b
		}},
		{"disk-smaller-than-image", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			disk(b)["initializeParams"].(map[string]any)["diskSizeGb"] = "5"
			return b
		}},
		{"network-unknown", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			nic(b)["network"] = "global/networks/prod"
			return b
		}},
		{"subnetwork-unknown", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			nic(b)["subnetwork"] = "regions/us-central1/subnetworks/prod"
			return b
		}},
		{"subnetwork-other-region", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			nic(b)["subnetwork"] = "projects/p/regions/europe-west1/subnetworks/default"
			return b
		}},
		{"no-network-interface", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			delete(b, "networkInterfaces")
			return b
		}},
		{"zone-unknown", cloudsim.Faults{}, "/compute/v1/projects/p/zones/us-central1-z/instances", validInstance},
		{"name-invalid", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			b["name"] = "Web_1"
			return b
		}},
		{"spot-no-capacity", cloudsim.Faults{SpotNoCapacity: true}, insert, func() map[string]any {
			b := validInstance()
			b["scheduling"] = map[string]any{"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE"}
			return b
		}},
		{"bulk-preemptible-no-capacity", cloudsim.Faults{SpotNoCapacity: true}, bulk, func() map[string]any {
			b := validBulk()
			b["instanceProperties"].(map[string]any)["scheduling"] = map[string]any{"preemptible": true}
			return b
		}},
		{"insert-name-taken", cloudsim.Faults{}, insert, validInstance},
		{"bulk-name-taken", cloudsim.Faults{}, bulk, validBulk},
		{"spot-live-migrate", cloudsim.Faults{}, insert, func() map[string]any {
			b := validInstance()
			b["scheduling"] = map[string]any{"provisioningModel": "SPOT", "onHostMaintenance": "MIGRATE"}
			return b
		}},
	}
	// These answer the same call made a second time (another requestId).
	twice := map[string]bool{"insert-name-taken": true, "bulk-name-taken": true}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := New(cloudsim.NewSim(c.faults, 1), Options{Project: "p"})
			hs := httptest.NewServer(srv)
			defer hs.Close()
			body, err := json.Marshal(c.body())
			if err != nil {
				t.Fatal(err)
			}
			existing := 0
			if twice[c.name] {
				first, err := http.Post(hs.URL+c.path, "application/json", bytes.NewReader(body))
				if err != nil || first.StatusCode != http.StatusOK {
					t.Fatalf("first call: %v %v", first.Status, err)
				}
				first.Body.Close()
				existing = len(srv.Instances())
			}
			resp, err := http.Post(hs.URL+c.path, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			got := answer(t, resp.StatusCode, raw)
			golden(t, filepath.Join("testdata", c.name+".golden"), got)
			if n := len(srv.Instances()); n != existing {
				t.Errorf("%d instances created by a refused call", n)
			}
		})
	}
}

// answer renders a response for a golden file: the HTTP status, and either
// the error body or the failed operation's error (stable fields only),
// re-indented so protojson's randomized spacing does not show.
func answer(t *testing.T, status int, raw []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, raw)
	}
	kind := "error"
	if m["kind"] == "compute#operation" {
		kind = "operation"
		keep := map[string]any{}
		for _, k := range []string{"kind", "operationType", "status", "error", "httpErrorStatusCode", "httpErrorMessage"} {
			if v, ok := m[k]; ok {
				keep[k] = v
			}
		}
		m = keep
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("HTTP %d (%s)\n%s\n", status, kind, b)
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("answer differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}
