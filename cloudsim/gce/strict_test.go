package gce

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
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

// fakeBacking records what each guest boots with and powers hosts off and
// on, handing out a new address on each start.
type fakeBacking struct {
	mu    sync.Mutex
	boots map[string]cloudsim.Boot
	calls []string
}

func (b *fakeBacking) Start(_ context.Context, id string, boot cloudsim.Boot) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.boots[id] = boot
	b.calls = append(b.calls, "start "+id)
	return "192.0.2.10", nil
}

func (b *fakeBacking) Stop(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "stop "+id)
	return nil
}

func (b *fakeBacking) PowerOff(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "poweroff "+id)
	return nil
}

func (b *fakeBacking) PowerOn(_ context.Context, id string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "poweron "+id)
	return "192.0.2.11", nil
}

// noPower is a backing that cannot stop hosts.
type noPower struct{}

func (noPower) Start(context.Context, string, cloudsim.Boot) (string, error) {
	return "192.0.2.20", nil
}
func (noPower) Stop(context.Context, string) error { return nil }

func endpoint(t *testing.T, f cloudsim.Faults, b cloudsim.Backing) (*Server, []option.ClientOption) {
	t.Helper()
	srv := New(cloudsim.NewSim(f, 3), Options{Project: "p", Backing: b})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return srv, []option.ClientOption{option.WithEndpoint(hs.URL), option.WithoutAuthentication()}
}

func instancesClient(t *testing.T, opts []option.ClientOption) *compute.InstancesClient {
	t.Helper()
	ic, err := compute.NewInstancesRESTClient(t.Context(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ic.Close() })
	return ic
}

func vm(name string, sched *computepb.Scheduling, items ...*computepb.Items) *computepb.InsertInstanceRequest {
	return &computepb.InsertInstanceRequest{Project: "p", Zone: testZone, InstanceResource: &computepb.Instance{
		Name: proto.String(name), MachineType: proto.String("zones/" + testZone + "/machineTypes/e2-medium"),
		Disks: bootDisk(), Scheduling: sched, Metadata: &computepb.Metadata{Items: items},
		NetworkInterfaces: []*computepb.NetworkInterface{{AccessConfigs: []*computepb.AccessConfig{{Type: proto.String("ONE_TO_ONE_NAT")}}}},
	}}
}

// create inserts and waits; the operation's own error is returned.
func create(t *testing.T, ic *compute.InstancesClient, req *computepb.InsertInstanceRequest) error {
	t.Helper()
	op, err := ic.Insert(t.Context(), req)
	if err != nil {
		return err
	}
	err = op.Wait(t.Context())
	if e := op.Proto().GetError().GetErrors(); len(e) > 0 {
		return errors.New(e[0].GetCode())
	}
	return err
}

func getVM(t *testing.T, ic *compute.InstancesClient, name string) *computepb.Instance {
	t.Helper()
	in, err := ic.Get(t.Context(), &computepb.GetInstanceRequest{Project: "p", Zone: testZone, Instance: name})
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return in
}

func TestSchedulingIsRecordedAndReported(t *testing.T) {
	_, opts := endpoint(t, cloudsim.Faults{}, nil)
	ic := instancesClient(t, opts)
	cases := []struct {
		name string
		in   *computepb.Scheduling
		want string // provisioningModel/preemptible/onHostMaintenance/automaticRestart/instanceTerminationAction
	}{
		{"standard", nil, "STANDARD/false/MIGRATE/true/"},
		{"spot-delete", &computepb.Scheduling{ProvisioningModel: proto.String("SPOT"), InstanceTerminationAction: proto.String("DELETE")}, "SPOT/true/TERMINATE/false/DELETE"},
		{"spot-default", &computepb.Scheduling{ProvisioningModel: proto.String("SPOT")}, "SPOT/true/TERMINATE/false/STOP"},
		{"preemptible", &computepb.Scheduling{Preemptible: proto.Bool(true)}, "/true/TERMINATE/false/"},
	}
	for _, c := range cases {
		if err := create(t, ic, vm(c.name, c.in)); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		s := getVM(t, ic, c.name).GetScheduling()
		got := strings.Join([]string{s.GetProvisioningModel(), boolStr(s.GetPreemptible()), s.GetOnHostMaintenance(),
			boolStr(s.GetAutomaticRestart()), s.GetInstanceTerminationAction()}, "/")
		if got != c.want {
			t.Errorf("%s: scheduling %s, want %s", c.name, got, c.want)
		}
	}
}

func boolStr(b bool) string { return map[bool]string{true: "true", false: "false"}[b] }

func TestSpotNoCapacityRefusesOnlySpot(t *testing.T) {
	srv, opts := endpoint(t, cloudsim.Faults{SpotNoCapacity: true}, nil)
	ic := instancesClient(t, opts)
	if err := create(t, ic, vm("standard", nil)); err != nil {
		t.Fatalf("standard create under SpotNoCapacity: %v", err)
	}
	for name, s := range map[string]*computepb.Scheduling{
		"spot":        {ProvisioningModel: proto.String("SPOT")},
		"preemptible": {Preemptible: proto.Bool(true)},
	} {
		if err := create(t, ic, vm(name, s)); err == nil || err.Error() != "ZONE_RESOURCE_POOL_EXHAUSTED" {
			t.Errorf("%s create = %v, want ZONE_RESOURCE_POOL_EXHAUSTED", name, err)
		}
	}
	if n := len(srv.Instances()); n != 1 {
		t.Errorf("%d instances, want only the standard one", n)
	}
}

func TestSSHKeysMetadataReachesTheGuest(t *testing.T) {
	b := &fakeBacking{boots: map[string]cloudsim.Boot{}}
	_, opts := endpoint(t, cloudsim.Faults{}, b)
	ic := instancesClient(t, opts)
	keys := "alice:ssh-ed25519 AAAAC3Nza1 alice@laptop\nbob:ssh-ed25519 AAAAC3Nza2 bob\nalice:ssh-rsa AAAAB3Nza3 alice@ci\n"
	if err := create(t, ic, vm("keyed", nil, &computepb.Items{Key: proto.String("ssh-keys"), Value: proto.String(keys)})); err != nil {
		t.Fatal(err)
	}
	boot := b.boots["keyed"]
	want := []string{"ssh-ed25519 AAAAC3Nza1 alice@laptop", "ssh-rsa AAAAB3Nza3 alice@ci"}
	if boot.KeyUser != "alice" || !slices.Equal(boot.PublicKeys, want) {
		t.Errorf("boot keys = %q for %q, want %q for alice", boot.PublicKeys, boot.KeyUser, want)
	}
	if len(boot.UserData) != 0 {
		t.Errorf("user-data %q, want none", boot.UserData)
	}
}

func TestStopStartThroughPower(t *testing.T) {
	b := &fakeBacking{boots: map[string]cloudsim.Boot{}}
	_, opts := endpoint(t, cloudsim.Faults{}, b)
	ic := instancesClient(t, opts)
	if err := create(t, ic, vm("web", nil)); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	op, err := ic.Stop(ctx, &computepb.StopInstanceRequest{Project: "p", Zone: testZone, Instance: "web"})
	if err != nil || op.Wait(ctx) != nil {
		t.Fatalf("stop: %v", err)
	}
	in := getVM(t, ic, "web")
	if in.GetStatus() != "TERMINATED" || in.GetNetworkInterfaces()[0].GetAccessConfigs()[0].GetNatIP() != "" {
		t.Errorf("after stop: status %s, external address %q; want TERMINATED with none",
			in.GetStatus(), in.GetNetworkInterfaces()[0].GetAccessConfigs()[0].GetNatIP())
	}
	op, err = ic.Start(ctx, &computepb.StartInstanceRequest{Project: "p", Zone: testZone, Instance: "web"})
	if err != nil || op.Wait(ctx) != nil {
		t.Fatalf("start: %v", err)
	}
	in = getVM(t, ic, "web")
	if in.GetStatus() != "RUNNING" || in.GetNetworkInterfaces()[0].GetAccessConfigs()[0].GetNatIP() != "192.0.2.11" {
		t.Errorf("after start: status %s, address %q; want RUNNING at the host's new address 192.0.2.11",
			in.GetStatus(), in.GetNetworkInterfaces()[0].GetAccessConfigs()[0].GetNatIP())
	}
	if want := []string{"start web", "poweroff web", "poweron web"}; !slices.Equal(b.calls, want) {
		t.Errorf("backing calls %v, want %v", b.calls, want)
	}
}

func TestStopNeedsAPoweredBacking(t *testing.T) {
	_, opts := endpoint(t, cloudsim.Faults{}, noPower{})
	ic := instancesClient(t, opts)
	if err := create(t, ic, vm("web", nil)); err != nil {
		t.Fatal(err)
	}
	_, err := ic.Stop(t.Context(), &computepb.StopInstanceRequest{Project: "p", Zone: testZone, Instance: "web"})
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != 400 {
		t.Errorf("stop without cloudsim.Power = %v, want a 400", err)
	}
}

// TestInstanceReportsResolvedReferences: a created instance reports full
// URLs for what it references and an address from its subnetwork.
func TestInstanceReportsResolvedReferences(t *testing.T) {
	_, opts := endpoint(t, cloudsim.Faults{}, nil)
	ic := instancesClient(t, opts)
	if err := create(t, ic, vm("web", nil)); err != nil {
		t.Fatal(err)
	}
	in := getVM(t, ic, "web")
	nic := in.GetNetworkInterfaces()[0]
	for what, got := range map[string]string{
		"/projects/p/zones/us-central1-a/machineTypes/e2-medium": in.GetMachineType(),
		"/projects/p/global/networks/default":                    nic.GetNetwork(),
		"/projects/p/regions/us-central1/subnetworks/default":    nic.GetSubnetwork(),
		"/projects/p/zones/us-central1-a/disks/web":              in.GetDisks()[0].GetSource(),
		"/projects/p/zones/us-central1-a/instances/web":          in.GetSelfLink(),
		"/projects/p/zones/us-central1-a":                        in.GetZone(),
		"10.128.0.":                                              nic.GetNetworkIP(),
		"ONE_TO_ONE_NAT":                                         nic.GetAccessConfigs()[0].GetType(),
		"https://":                                               in.GetMachineType()[:8],
	} {
		if !strings.Contains(got, what) {
			t.Errorf("instance reports %q, want it to contain %q", got, what)
		}
	}
	if in.GetDisks()[0].GetDiskSizeGb() != 10 || !in.GetDisks()[0].GetBoot() {
		t.Errorf("boot disk %v, want a 10 GB boot disk (the image's size)", in.GetDisks()[0])
	}
}

func TestCatalog(t *testing.T) {
	_, opts := endpoint(t, cloudsim.Faults{}, nil)
	ctx := t.Context()
	zc, err := compute.NewZonesRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer zc.Close()
	var zones []string
	for it := zc.List(ctx, &computepb.ListZonesRequest{Project: "p"}); ; {
		z, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		zones = append(zones, z.GetName())
	}
	if !slices.Contains(zones, "us-central1-a") || !slices.Contains(zones, "europe-west1-b") {
		t.Errorf("zones.list = %v", zones)
	}
	if _, err := zc.Get(ctx, &computepb.GetZoneRequest{Project: "p", Zone: "us-central1-z"}); !isGoogleErr(err, 400, "invalid") {
		t.Errorf("zones.get of an unknown zone = %v, want 400 invalid", err)
	}

	rc, err := compute.NewRegionsRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if r, err := rc.Get(ctx, &computepb.GetRegionRequest{Project: "p", Region: "us-central1"}); err != nil || len(r.GetZones()) != 4 {
		t.Errorf("regions.get us-central1 = %v, %v; want 4 zones", r.GetZones(), err)
	}

	mc, err := compute.NewMachineTypesRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	mt, err := mc.Get(ctx, &computepb.GetMachineTypeRequest{Project: "p", Zone: testZone, MachineType: "e2-medium"})
	if err != nil || mt.GetGuestCpus() != 2 || mt.GetMemoryMb() != 4096 || !mt.GetIsSharedCpu() || mt.GetZone() != testZone {
		t.Errorf("machineTypes.get e2-medium = %v, %v", mt, err)
	}
	if _, err := mc.Get(ctx, &computepb.GetMachineTypeRequest{Project: "p", Zone: testZone, MachineType: "e2-mega"}); !isGoogleErr(err, 404, "notFound") {
		t.Errorf("machineTypes.get e2-mega = %v, want 404", err)
	}
	n := 0
	for it := mc.List(ctx, &computepb.ListMachineTypesRequest{Project: "p", Zone: testZone, MaxResults: proto.Uint32(5)}); ; n++ {
		if _, err := it.Next(); errors.Is(err, iterator.Done) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if n != len(machineTypes) {
		t.Errorf("machineTypes.list over pages of 5 = %d types, want %d", n, len(machineTypes))
	}

	imc, err := compute.NewImagesRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer imc.Close()
	// A public image project answers even though Options.Project is "p".
	im, err := imc.GetFromFamily(ctx, &computepb.GetFromFamilyImageRequest{Project: "debian-cloud", Family: "debian-12"})
	if err != nil || im.GetName() != "debian-12-bookworm-v20241112" {
		t.Errorf("images.getFromFamily debian-12 = %v, %v; want the newest of the family", im.GetName(), err)
	}
	if _, err := imc.GetFromFamily(ctx, &computepb.GetFromFamilyImageRequest{Project: "debian-cloud", Family: "debian-13"}); !isGoogleErr(err, 404, "notFound") {
		t.Errorf("images.getFromFamily debian-13 = %v, want 404", err)
	}

	nc, err := compute.NewNetworksRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nw, err := nc.Get(ctx, &computepb.GetNetworkRequest{Project: "p", Network: "default"}); err != nil || !nw.GetAutoCreateSubnetworks() || len(nw.GetSubnetworks()) != len(regions) {
		t.Errorf("networks.get default = %v, %v; want auto mode with a subnetwork per region", nw, err)
	}
	sc, err := compute.NewSubnetworksRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if sn, err := sc.Get(ctx, &computepb.GetSubnetworkRequest{Project: "p", Region: "us-central1", Subnetwork: "default"}); err != nil || sn.GetIpCidrRange() != "10.128.0.0/20" {
		t.Errorf("subnetworks.get us-central1/default = %v, %v", sn, err)
	}
	if _, err := sc.Get(ctx, &computepb.GetSubnetworkRequest{Project: "p", Region: "us-central1", Subnetwork: "prod"}); !isGoogleErr(err, 404, "notFound") {
		t.Errorf("subnetworks.get prod = %v, want 404", err)
	}
}

func TestFirewalls(t *testing.T) {
	_, opts := endpoint(t, cloudsim.Faults{}, nil)
	ctx := t.Context()
	fc, err := compute.NewFirewallsRESTClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	names := func() []string {
		var out []string
		for it := fc.List(ctx, &computepb.ListFirewallsRequest{Project: "p"}); ; {
			f, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, f.GetName())
		}
	}
	if got := names(); !slices.Equal(got, []string{"default-allow-icmp", "default-allow-internal", "default-allow-rdp", "default-allow-ssh"}) {
		t.Errorf("a new project's firewalls = %v, want GCE's four defaults", got)
	}
	swarm := func() *computepb.Firewall {
		return &computepb.Firewall{
			Name: proto.String("swarm"), Network: proto.String("global/networks/default"),
			Allowed:      []*computepb.Allowed{{IPProtocol: proto.String("tcp"), Ports: []string{"2377", "7946"}}, {IPProtocol: proto.String("udp"), Ports: []string{"4789"}}},
			SourceRanges: []string{"10.0.0.0/8"},
		}
	}
	op, err := fc.Insert(ctx, &computepb.InsertFirewallRequest{Project: "p", FirewallResource: swarm()})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Wait(ctx); err != nil || !op.Done() {
		t.Fatalf("wait for the global operation: %v", err)
	}
	f, err := fc.Get(ctx, &computepb.GetFirewallRequest{Project: "p", Firewall: "swarm"})
	if err != nil || f.GetDirection() != "INGRESS" || f.GetPriority() != 1000 || !strings.HasSuffix(f.GetNetwork(), "/projects/p/global/networks/default") {
		t.Errorf("firewalls.get swarm = %v, %v", f, err)
	}
	if _, err := fc.Insert(ctx, &computepb.InsertFirewallRequest{Project: "p", FirewallResource: swarm()}); !isGoogleErr(err, 409, "alreadyExists") {
		t.Errorf("a second swarm rule = %v, want 409 alreadyExists", err)
	}
	for name, mutate := range map[string]func(*computepb.Firewall){
		"protocol":      func(f *computepb.Firewall) { f.Allowed[0].IPProtocol = proto.String("tcpp") },
		"icmp ports":    func(f *computepb.Firewall) { f.Allowed[0].IPProtocol = proto.String("icmp") },
		"port range":    func(f *computepb.Firewall) { f.Allowed[0].Ports = []string{"80-70"} },
		"source range":  func(f *computepb.Firewall) { f.SourceRanges = []string{"10.0.0.0/33"} },
		"no rules":      func(f *computepb.Firewall) { f.Allowed = nil },
		"name":          func(f *computepb.Firewall) { f.Name = proto.String("Swarm") },
		"other network": func(f *computepb.Firewall) { f.Network = proto.String("global/networks/prod") },
	} {
		f := swarm()
		f.Name = proto.String("other")
		mutate(f)
		_, err := fc.Insert(ctx, &computepb.InsertFirewallRequest{Project: "p", FirewallResource: f})
		var ge *googleapi.Error
		if !errors.As(err, &ge) || (ge.Code != 400 && ge.Code != 404) {
			t.Errorf("%s: insert = %v, want GCE's refusal", name, err)
		}
	}
	op, err = fc.Delete(ctx, &computepb.DeleteFirewallRequest{Project: "p", Firewall: "swarm"})
	if err != nil || op.Wait(ctx) != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := fc.Get(ctx, &computepb.GetFirewallRequest{Project: "p", Firewall: "swarm"}); !isGoogleErr(err, 404, "notFound") {
		t.Errorf("get after delete = %v, want 404", err)
	}
}

func isGoogleErr(err error, code int, reason string) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == code && len(ge.Errors) > 0 && ge.Errors[0].Reason == reason
}

// gatedBacking holds every host's start until gate is closed.
type gatedBacking struct {
	noPower
	started chan string
	gate    chan struct{}
}

func (b gatedBacking) Start(ctx context.Context, id string, _ cloudsim.Boot) (string, error) {
	b.started <- id
	select {
	case <-b.gate:
		return "192.0.2.30", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// TestNotRunningBeforeItsHost: an instance whose backing host is still
// starting is STAGING however long it has been pending, and RUNNING only
// with the host's own address (a caller must never see RUNNING with an
// address nothing answers on).
func TestNotRunningBeforeItsHost(t *testing.T) {
	b := gatedBacking{started: make(chan string, 1), gate: make(chan struct{})}
	_, opts := endpoint(t, cloudsim.Faults{PendingFor: time.Millisecond}, b)
	ic := instancesClient(t, opts)
	ctx := t.Context()
	done := make(chan error, 1)
	go func() {
		op, err := ic.Insert(ctx, vm("web", nil))
		if err == nil {
			err = op.Wait(ctx)
		}
		done <- err
	}()
	<-b.started
	time.Sleep(20 * time.Millisecond) // well past PendingFor
	in, err := ic.Get(ctx, &computepb.GetInstanceRequest{Project: "p", Zone: testZone, Instance: "web"})
	if err != nil {
		t.Fatal(err)
	}
	close(b.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if in.GetStatus() == "RUNNING" {
		t.Errorf("RUNNING at %s while its host started", in.GetNetworkInterfaces()[0].GetAccessConfigs()[0].GetNatIP())
	}
	in, err = ic.Get(ctx, &computepb.GetInstanceRequest{Project: "p", Zone: testZone, Instance: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if in.GetStatus() != "RUNNING" || in.GetNetworkInterfaces()[0].GetNetworkIP() != "192.0.2.30" {
		t.Errorf("after the host started: %s at %s, want RUNNING at 192.0.2.30", in.GetStatus(), in.GetNetworkInterfaces()[0].GetNetworkIP())
	}
}
