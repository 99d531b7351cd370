package gce

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/provisionhq/provision/cloudsim"
)

const testZone = "us-central1-a"

// bootDisk is a boot disk from the Debian 12 family.
func bootDisk() []*computepb.AttachedDisk {
	return []*computepb.AttachedDisk{{Boot: proto.Bool(true), AutoDelete: proto.Bool(true),
		InitializeParams: &computepb.AttachedDiskInitializeParams{SourceImage: proto.String("projects/debian-cloud/global/images/family/debian-12")}}}
}

// client returns the official REST client pointed at a fresh emulator.
func client(t *testing.T, f cloudsim.Faults) (*compute.InstancesClient, *compute.ZoneOperationsClient, *cloudsim.Sim, *Server) {
	t.Helper()
	sim := cloudsim.NewSim(f, 7)
	srv := New(sim, Options{Project: "p"})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	opts := []option.ClientOption{option.WithEndpoint(hs.URL), option.WithoutAuthentication()}
	ic, err := compute.NewInstancesRESTClient(t.Context(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := compute.NewZoneOperationsRESTClient(t.Context(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ic.Close(); _ = oc.Close() })
	return ic, oc, sim, srv
}

func bulk(names []string, reqID string) *computepb.BulkInsertInstanceRequest {
	per := map[string]*computepb.BulkInsertInstanceResourcePerInstanceProperties{}
	for _, n := range names {
		per[n] = &computepb.BulkInsertInstanceResourcePerInstanceProperties{Name: proto.String(n)}
	}
	return &computepb.BulkInsertInstanceRequest{
		Project: "p", Zone: testZone, RequestId: proto.String(reqID),
		BulkInsertInstanceResourceResource: &computepb.BulkInsertInstanceResource{
			Count: proto.Int64(int64(len(names))), PerInstanceProperties: per,
			InstanceProperties: &computepb.InstanceProperties{
				MachineType:       proto.String("e2-small"),
				Labels:            map[string]string{"provision-cluster": "c"},
				Disks:             bootDisk(),
				NetworkInterfaces: []*computepb.NetworkInterface{{}},
			},
		},
	}
}

func TestSameRequestIDSameOperation(t *testing.T) {
	ic, oc, sim, srv := client(t, cloudsim.Faults{})
	ctx := t.Context()
	op1, err := ic.BulkInsert(ctx, bulk([]string{"a", "b", "c"}, "11111111-1111-4111-8111-111111111111"))
	if err != nil {
		t.Fatal(err)
	}
	op2, err := ic.BulkInsert(ctx, bulk([]string{"a", "b", "c"}, "11111111-1111-4111-8111-111111111111"))
	if err != nil {
		t.Fatal(err)
	}
	if op1.Name() != op2.Name() {
		t.Errorf("same requestId gave operations %s and %s", op1.Name(), op2.Name())
	}
	done, err := oc.Wait(ctx, &computepb.WaitZoneOperationRequest{Project: "p", Zone: testZone, Operation: op1.Name()})
	if err != nil || done.GetStatus() != computepb.Operation_DONE || done.GetError() != nil {
		t.Fatalf("wait: %v %v", done, err)
	}
	if n := len(srv.Instances()); n != 3 {
		t.Errorf("%d instances, want 3", n)
	}
	if got := sim.Calls("instances.bulkInsert"); got != 2 {
		t.Errorf("bulkInsert calls = %d", got)
	}
	// Another requestId naming existing instances fails as GCE does.
	op3, err := ic.BulkInsert(ctx, bulk([]string{"c", "d"}, "22222222-2222-4222-8222-222222222222"))
	if err != nil {
		t.Fatal(err)
	}
	if code := op3.Proto().GetError().GetErrors()[0].GetCode(); code != "RESOURCE_ALREADY_EXISTS" {
		t.Errorf("op error %q", code)
	}
	// The replay and the refused insert launched nothing more.
	if inv := srv.Inventory(); !slices.Equal(inv.Alive, []string{"a", "b", "c"}) || inv.Launched != 3 {
		t.Errorf("inventory %+v, want a, b, c alive and 3 launched", inv)
	}
}

func TestListFilterAndPages(t *testing.T) {
	ic, oc, _, _ := client(t, cloudsim.Faults{})
	ctx := t.Context()
	var names []string
	for i := range 5 {
		names = append(names, fmt.Sprintf("m%d", i))
	}
	op, err := ic.BulkInsert(ctx, bulk(names, "33333333-3333-4333-8333-333333333333"))
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	list := func(filter string) []string {
		it := ic.List(ctx, &computepb.ListInstancesRequest{Project: "p", Zone: testZone, Filter: proto.String(filter), MaxResults: proto.Uint32(2)})
		var got []string
		for {
			in, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return got
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, in.GetName())
		}
	}
	if got := list(`(labels.provision-cluster = "c")`); len(got) != 5 {
		t.Errorf("list by label over pages of 2 = %v", got)
	}
	if got := list(`(labels.provision-cluster = "other")`); len(got) != 0 {
		t.Errorf("list other cluster = %v", got)
	}
	_ = oc
}

func TestInvisibleThenRunning(t *testing.T) {
	ic, _, _, _ := client(t, cloudsim.Faults{InvisibleFor: 150 * time.Millisecond, PendingFor: 300 * time.Millisecond})
	ctx := t.Context()
	op, err := ic.Insert(ctx, &computepb.InsertInstanceRequest{Project: "p", Zone: testZone,
		InstanceResource: &computepb.Instance{Name: proto.String("x"), MachineType: proto.String("zones/" + testZone + "/machineTypes/e2-small"),
			Disks: bootDisk(), NetworkInterfaces: []*computepb.NetworkInterface{{}}}})
	if err != nil {
		t.Fatal(err)
	}
	get := func() (*computepb.Instance, error) {
		return ic.Get(ctx, &computepb.GetInstanceRequest{Project: "p", Zone: testZone, Instance: "x"})
	}
	var ge *googleapi.Error
	if _, err := get(); !errors.As(err, &ge) || ge.Code != 404 {
		t.Fatalf("fresh instance: %v, want 404", err)
	}
	time.Sleep(200 * time.Millisecond)
	in, err := get()
	if err != nil || in.GetStatus() == "RUNNING" {
		t.Fatalf("after 200ms: %v %v, want visible, not running", in.GetStatus(), err)
	}
	time.Sleep(150 * time.Millisecond)
	if in, err = get(); err != nil || in.GetStatus() != "RUNNING" || in.GetNetworkInterfaces()[0].GetNetworkIP() == "" {
		t.Fatalf("after 350ms: %v %v", in, err)
	}
	_ = op
}

func TestThrottleIsRateLimitExceeded(t *testing.T) {
	ic, _, _, _ := client(t, cloudsim.Faults{ThrottleRate: 1})
	_, err := ic.Get(t.Context(), &computepb.GetInstanceRequest{Project: "p", Zone: testZone, Instance: "x"})
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != 429 || len(ge.Errors) == 0 || ge.Errors[0].Reason != "rateLimitExceeded" {
		t.Fatalf("got %v", err)
	}
}
