package gcp

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/providers"
)

// withSettings returns n specs of one pool with settings changed by edit.
func withSettings(t *testing.T, cluster, pool string, n int, edit func(providers.Settings)) []providers.MachineSpec {
	t.Helper()
	ss := specs(t, cluster, pool, n)
	for i := range ss {
		set := poolSettings()
		edit(set)
		ss[i].Settings = set
	}
	return ss
}

// TestMachineTypeFormEachPathTakes: the emulator refuses what GCE refuses
// (a bare name on instances.insert, a URL in bulkInsert's
// instanceProperties), so a pool of one (insert) and a pool of three
// (bulkInsert) both succeed only when each call gets its own form,
// whichever form the plan used.
func TestMachineTypeFormEachPathTakes(t *testing.T) {
	for _, mt := range []string{"e2-medium", "zones/" + testZone + "/machineTypes/e2-medium"} {
		for _, n := range []int{1, 3} {
			t.Run(mt+"/"+map[int]string{1: "insert", 3: "bulkInsert"}[n], func(t *testing.T) {
				p, sim, srv := simProvider(t, cloudsim.Faults{}, "forms")
				ss := withSettings(t, "forms", "workers", n, func(s providers.Settings) { s["machine_type"] = mt })
				if _, err := p.Create(t.Context(), ss); err != nil {
					t.Fatalf("Create: %v", err)
				}
				if sim.Calls("instances.insert")+sim.Calls("instances.bulkInsert") != 1 {
					t.Errorf("calls %v, want one create call", sim.CallCounts())
				}
				for _, in := range srv.Instances() {
					if !strings.HasSuffix(in.GetMachineType(), "/zones/"+testZone+"/machineTypes/e2-medium") {
						t.Errorf("instance %s has machine type %s", in.GetName(), in.GetMachineType())
					}
				}
			})
		}
	}
}

func TestMachineTypeRef(t *testing.T) {
	for _, c := range []struct{ setting, insert, bulk string }{
		{"e2-medium", "zones/europe-west1-b/machineTypes/e2-medium", "e2-medium"},
		{"zones/europe-west1-b/machineTypes/n2-standard-2", "zones/europe-west1-b/machineTypes/n2-standard-2", "n2-standard-2"},
		{"https://compute.googleapis.com/compute/v1/projects/p/zones/europe-west1-b/machineTypes/e2-small",
			"https://compute.googleapis.com/compute/v1/projects/p/zones/europe-west1-b/machineTypes/e2-small", "e2-small"},
	} {
		s := settings{Zone: testZone, MachineType: c.setting}
		if got := s.machineTypeRef(false); got != c.insert {
			t.Errorf("insert form of %q = %q, want %q", c.setting, got, c.insert)
		}
		if got := s.machineTypeRef(true); got != c.bulk {
			t.Errorf("bulkInsert form of %q = %q, want %q", c.setting, got, c.bulk)
		}
	}
}

// TestInvalidReferencesAreInvalidSpec: whatever the plan names that GCE
// does not have is ErrInvalidSpec, on one line naming the cloud, zone and
// pool and quoting GCE, with nothing created, on both create paths.
func TestInvalidReferencesAreInvalidSpec(t *testing.T) {
	cases := []struct {
		name string
		edit func(providers.Settings)
		want string // in the message
	}{
		{"machine type", func(s providers.Settings) { s["machine_type"] = "e2-mega" }, "Machine type with name 'e2-mega' does not exist"},
		{"image family", func(s providers.Settings) {
			s["image"] = "projects/debian-cloud/global/images/family/debian-13"
		}, "projects/debian-cloud/global/images/family/debian-13' was not found"},
		{"image URL", func(s providers.Settings) { s["image"] = "debian-12" }, "sourceImage': 'debian-12'. The URL is malformed"},
		{"network", func(s providers.Settings) { s["network"] = "prod" }, "The referenced network resource cannot be found"},
		{"subnetwork", func(s providers.Settings) { s["subnetwork"] = "prod" }, "The referenced subnetwork resource cannot be found"},
		{"zone", func(s providers.Settings) { s["zone"] = "europe-west1-z" }, "Unknown zone"},
	}
	for _, c := range cases {
		for _, n := range []int{1, 3} {
			t.Run(c.name+"/"+map[int]string{1: "insert", 3: "bulkInsert"}[n], func(t *testing.T) {
				p, _, srv := simProvider(t, cloudsim.Faults{}, "bad")
				_, err := p.Create(t.Context(), withSettings(t, "bad", "workers", n, c.edit))
				if !errors.Is(err, providers.ErrInvalidSpec) {
					t.Fatalf("Create = %v, want ErrInvalidSpec", err)
				}
				msg := err.Error()
				for _, want := range []string{"gcp", `pool "workers"`, "invalid spec", c.want} {
					if !strings.Contains(msg, want) {
						t.Errorf("error %q does not say %q", msg, want)
					}
				}
				if strings.Contains(msg, "\n") {
					t.Errorf("error is not one line: %q", msg)
				}
				if n := len(srv.Instances()); n != 0 {
					t.Errorf("%d instances created", n)
				}
			})
		}
	}
}

// TestSpotPoolsAskForSpot: a spec with Spot gets GCE Spot scheduling that
// deletes the VM when reclaimed, on both create paths; other pools stay
// standard, and spot and standard machines never share a bulkInsert.
func TestSpotPoolsAskForSpot(t *testing.T) {
	p, sim, srv := simProvider(t, cloudsim.Faults{}, "spot")
	var all []providers.MachineSpec
	for pool, n := range map[string]int{"one": 1, "many": 3} {
		ss := specs(t, "spot", pool, n)
		for i := range ss {
			ss[i].Spot = true
		}
		all = append(all, ss...)
	}
	std := specs(t, "spot", "many", 5)[3:] // same pool and settings, not spot
	all = append(all, std...)
	if _, err := p.Create(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	if b, i := sim.Calls("instances.bulkInsert"), sim.Calls("instances.insert"); b != 2 || i != 1 {
		t.Errorf("bulkInsert %d, insert %d; want 2 and 1 (spot and standard apart)", b, i)
	}
	spot := map[string]bool{}
	for _, s := range all {
		spot[string(s.ID)] = s.Spot
	}
	for _, in := range srv.Instances() {
		s := in.GetScheduling()
		got := s.GetProvisioningModel() + "/" + s.GetInstanceTerminationAction()
		want := "STANDARD/"
		if spot[in.GetName()] {
			want = "SPOT/DELETE"
		}
		if got != want {
			t.Errorf("instance %s scheduling %s, want %s", in.GetName(), got, want)
		}
	}
}

func TestSpotWithoutCapacityIsCapacity(t *testing.T) {
	p, _, srv := simProvider(t, cloudsim.Faults{SpotNoCapacity: true}, "spotcap")
	for _, n := range []int{1, 3} {
		ss := specs(t, "spotcap", "spot"+map[int]string{1: "one", 3: "many"}[n], n)
		for i := range ss {
			ss[i].Spot = true
		}
		_, err := p.Create(t.Context(), ss)
		if !errors.Is(err, providers.ErrCapacity) || !strings.Contains(err.Error(), "ZONE_RESOURCE_POOL_EXHAUSTED") {
			t.Errorf("spot pool of %d: Create = %v, want ErrCapacity", n, err)
		}
	}
	if _, err := p.Create(t.Context(), specs(t, "spotcap", "standard", 2)); err != nil {
		t.Errorf("standard pool under a spot shortage: %v", err)
	}
	if n := len(srv.Instances()); n != 2 {
		t.Errorf("%d instances, want the 2 standard ones", n)
	}
}

// TestLoginKeysInSSHKeysMetadata: the login user's keys go in GCE's
// ssh-keys metadata too, which the guest agent installs on any image.
func TestLoginKeysInSSHKeysMetadata(t *testing.T) {
	p, _, srv := simProvider(t, cloudsim.Faults{}, "keys")
	ss := specs(t, "keys", "workers", 2)
	if _, err := p.Create(t.Context(), ss); err != nil {
		t.Fatal(err)
	}
	want := "admin:" + strings.TrimSpace(ss[0].AuthorizedKeys[0])
	for _, in := range srv.Instances() {
		if got := metadataValue(in, "ssh-keys"); got != want {
			t.Errorf("instance %s ssh-keys = %q, want %q", in.GetName(), got, want)
		}
	}
}

// TestStoppedMachineIsNotWaitedFor: an instance someone stopped
// (TERMINATED, GCE's stopped state) is listed as stopping, and Create
// says so instead of waiting for it to run.
func TestStoppedMachineIsNotWaitedFor(t *testing.T) {
	p, _, _ := simProvider(t, cloudsim.Faults{}, "stop")
	ss := specs(t, "stop", "workers", 1)
	if _, err := p.Create(t.Context(), ss); err != nil {
		t.Fatal(err)
	}
	ic, err := compute.NewInstancesRESTClient(t.Context(), option.WithEndpoint(os.Getenv(EnvEndpoint)), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	op, err := ic.Stop(t.Context(), &computepb.StopInstanceRequest{Project: "sim-project", Zone: testZone, Instance: string(ss[0].ID)})
	if err != nil || op.Wait(t.Context()) != nil {
		t.Fatalf("stop: %v", err)
	}
	ms, err := p.List(t.Context(), providers.Selector{Cluster: "stop"})
	if err != nil || len(ms) != 1 || ms[0].State != providers.StateStopping {
		t.Fatalf("List = %v, %v; want the machine, stopping", ms, err)
	}
	if _, err := p.Create(t.Context(), ss); err == nil || !strings.Contains(err.Error(), "is stopped") {
		t.Errorf("Create over a stopped machine = %v, want it named as stopped", err)
	}
}

// TestTakenNameIsAdopted: when instances.insert answers 409 (the machine
// was created by an earlier run under another requestId and lists do not
// show it yet), Create lists again and adopts it instead of failing.
func TestTakenNameIsAdopted(t *testing.T) {
	p, sim, srv := simProvider(t, cloudsim.Faults{InvisibleFor: 500 * time.Millisecond}, "taken")
	ss := specs(t, "taken", "workers", 1)
	ic, err := compute.NewInstancesRESTClient(t.Context(), option.WithEndpoint(os.Getenv(EnvEndpoint)), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	b := &batch{set: settings{Project: "sim-project", Zone: testZone, MachineType: "e2-medium",
		Image: "projects/debian-cloud/global/images/family/debian-12"}, cluster: "taken", pool: "workers", specs: ss,
		userData: map[string][]byte{string(ss[0].ID): []byte("#cloud-config\n")}}
	props := b.properties([]string{string(ss[0].ID)}, false)
	if _, err := ic.Insert(t.Context(), &computepb.InsertInstanceRequest{Project: "sim-project", Zone: testZone,
		InstanceResource: &computepb.Instance{Name: proto.String(string(ss[0].ID)), MachineType: props.MachineType,
			Labels: props.Labels, Metadata: props.Metadata, NetworkInterfaces: props.NetworkInterfaces, Disks: props.Disks}}); err != nil {
		t.Fatal(err)
	}
	ms, err := p.Create(t.Context(), ss)
	if err != nil || len(ms) != 1 || ms[0].Address == "" {
		t.Fatalf("Create over a taken name = %v, %v; want the existing machine adopted", ms, err)
	}
	if n := len(srv.Instances()); n != 1 {
		t.Errorf("%d instances, want 1", n)
	}
	if got := sim.Calls("instances.insert"); got < 2 {
		t.Errorf("insert calls = %d, want the provider's own refused insert too", got)
	}
}
