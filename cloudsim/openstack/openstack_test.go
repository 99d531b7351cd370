package openstack_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/provisionhq/provision/cloudsim"
	simos "github.com/provisionhq/provision/cloudsim/openstack"
	"github.com/provisionhq/provision/cloudsim/userdata"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
	"github.com/provisionhq/provision/providers/hostkey"
)

type fakeBacking struct {
	mu       sync.Mutex
	started  map[string]cloudsim.Boot
	stopped  []string
	startErr error
}

func (b *fakeBacking) Start(_ context.Context, id string, boot cloudsim.Boot) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.startErr != nil {
		return "", b.startErr
	}
	b.started[id] = boot
	return "10.9.8.7", nil
}

func (b *fakeBacking) Stop(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = append(b.stopped, id)
	return nil
}

// clientsFor authenticates gophercloud against the emulator, as the
// provider does, and returns compute and network clients.
func clientsFor(t *testing.T, sim *cloudsim.Sim, opts simos.Options) (*gophercloud.ServiceClient, *gophercloud.ServiceClient, *simos.Server) {
	t.Helper()
	srv := simos.New(sim, opts)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() { ts.Close(); srv.Close() })
	pc, err := gopenstack.AuthenticatedClient(t.Context(), gophercloud.AuthOptions{
		IdentityEndpoint: ts.URL + "/identity/v3", ApplicationCredentialID: "ac", ApplicationCredentialSecret: "s",
	})
	if err != nil {
		t.Fatal(err)
	}
	compute, err := gopenstack.NewComputeV2(pc, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	network, err := gopenstack.NewNetworkV2(pc, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	return compute, network, srv
}

func listAll(t *testing.T, c *gophercloud.ServiceClient, opts servers.ListOpts) []servers.Server {
	t.Helper()
	pages, err := servers.List(c, opts).AllPages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ss, err := servers.ExtractServers(pages)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func TestMultiCreateNamesPaginationAndBacking(t *testing.T) {
	sim := cloudsim.NewSim(cloudsim.Faults{PendingFor: 30 * time.Millisecond}, 1)
	back := &fakeBacking{started: map[string]cloudsim.Boot{}}
	compute, network, srv := clientsFor(t, sim, simos.Options{MaxLimit: 2, Backing: back})

	created, err := servers.Create(t.Context(), compute, servers.CreateOpts{
		Name: "web", FlavorRef: simos.FlavorSmall, ImageRef: simos.ImageDebian12, Min: 1, Max: 3,
		UserData: []byte("#cloud-config\n"), Metadata: map[string]string{"k": "v"},
	}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if created.ID == "" {
		t.Fatal("create returned no server ID")
	}
	time.Sleep(60 * time.Millisecond)
	ss := listAll(t, compute, servers.ListOpts{Limit: 2}) // 3 servers over 2 pages
	var names []string
	for _, s := range ss {
		names = append(names, s.Name)
		if s.Status != "ACTIVE" || s.Metadata["k"] != "v" {
			t.Errorf("server %s: status %s metadata %v", s.Name, s.Status, s.Metadata)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"web-1", "web-2", "web-3"}) {
		t.Errorf("names %v, want web-1..3 as Nova names a multi-create", names)
	}
	if got := sim.Calls("servers.list"); got != 2 {
		t.Errorf("servers.list = %d, want 2 pages", got)
	}
	if b := back.started[created.ID]; string(b.UserData) != "#cloud-config\n" || b.LaunchIndex != 0 {
		t.Errorf("backing got user-data %q, launch index %d", b.UserData, b.LaunchIndex)
	}
	pages, err := ports.List(network, ports.ListOpts{DeviceID: created.ID}).AllPages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := ports.ExtractPorts(pages)
	if len(ps) != 1 || ps[0].FixedIPs[0].IPAddress != "10.9.8.7" {
		t.Errorf("ports of %s = %+v, want the backing's address", created.ID, ps)
	}
	if err := servers.Delete(t.Context(), compute, created.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(back.stopped, created.ID) {
		t.Errorf("backing not stopped on delete")
	}
	if inv := srv.Inventory(); len(inv.Alive) != 2 || slices.Contains(inv.Alive, created.ID) || inv.Launched != 3 {
		t.Errorf("inventory after deleting one of 3: %+v, want the other 2 alive and 3 launched", inv)
	}
	time.Sleep(80 * time.Millisecond)
	err = servers.Get(t.Context(), compute, created.ID).Err
	if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("get after delete = %v, want 404", err)
	}
	// Names are regexes, as in Nova.
	if got := listAll(t, compute, servers.ListOpts{Name: "^web-[23]$"}); len(got) != 2 {
		t.Errorf("name filter found %d servers", len(got))
	}
}

func TestFaults(t *testing.T) {
	sim := cloudsim.NewSim(cloudsim.Faults{InstanceQuota: 1, InvisibleFor: time.Hour}, 1)
	compute, _, _ := clientsFor(t, sim, simos.Options{})
	opts := servers.CreateOpts{Name: "a", FlavorRef: "m1.small-does-not-exist", ImageRef: simos.ImageDebian12}
	if err := servers.Create(t.Context(), compute, opts, nil).Err; !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("unknown flavor: %v, want 400", err)
	}
	opts.FlavorRef = simos.FlavorSmall
	s, err := servers.Create(t.Context(), compute, opts, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	// Invisible to reads, not to writes.
	if err := servers.Get(t.Context(), compute, s.ID).Err; !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("get of a fresh server = %v, want 404 (eventual consistency)", err)
	}
	err = servers.Create(t.Context(), compute, opts, nil).Err
	var uc gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &uc) || uc.Actual != http.StatusForbidden {
		t.Fatalf("over quota: %v, want 403", err)
	}
	if want := `{"forbidden":{"code":403,"message":"Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"}}`; string(uc.Body[:len(uc.Body)-1]) != want {
		t.Errorf("quota body %s", uc.Body)
	}

	sim.SetFaults(cloudsim.Faults{ThrottleRate: 1})
	err = servers.Create(t.Context(), compute, opts, nil).Err
	if !errors.As(err, &uc) || uc.Actual != http.StatusTooManyRequests || uc.ResponseHeader.Get("Retry-After") != "1" {
		t.Errorf("throttled create: %v, want 429 with Retry-After", err)
	}
	err = servers.List(compute, nil).EachPage(t.Context(), func(context.Context, pagination.Page) (bool, error) { return true, nil })
	if !gophercloud.ResponseCodeIs(err, http.StatusRequestEntityTooLarge) {
		t.Errorf("throttled list: %v, want 413 overLimit", err)
	}

	sim.SetFaults(cloudsim.Faults{NoCapacity: true})
	s, err = servers.Create(t.Context(), compute, servers.CreateOpts{Name: "b", FlavorRef: simos.FlavorSmall, ImageRef: simos.ImageDebian12}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	got, err := servers.Get(t.Context(), compute, s.ID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "ERROR" || got.Fault.Message == "" {
		t.Errorf("no capacity: status %s fault %q, want ERROR with No valid host", got.Status, got.Fault.Message)
	}
}

func TestUnauthenticated(t *testing.T) {
	srv := simos.New(cloudsim.NewSim(cloudsim.Faults{}, 1), simos.Options{})
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/compute/v2.1/servers/detail", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", rec.Code)
	}
}

// TestMultiCreateGivesEachServerItsLaunchIndexPart: one servers.create with
// batch user-data; each backing host gets only its own launch index's part,
// as cloud-init's OpenStack datasource applies it.
func TestMultiCreateGivesEachServerItsLaunchIndexPart(t *testing.T) {
	sim := cloudsim.NewSim(cloudsim.Faults{}, 1)
	back := &fakeBacking{started: map[string]cloudsim.Boot{}}
	compute, _, _ := clientsFor(t, sim, simos.Options{Backing: back})
	var specs []providers.MachineSpec
	for i := range 3 {
		specs = append(specs, providers.MachineSpec{ID: providers.MachineID(fmt.Sprintf("m-%d", i)),
			HostKey: hostkey.Key{PrivatePEM: []byte(fmt.Sprintf("priv-%d", i)), Public: fmt.Sprintf("ssh-ed25519 pub-%d", i)}})
	}
	ud, err := cloudinit.MultiPart(specs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := servers.Create(t.Context(), compute, servers.CreateOpts{
		Name: "b", FlavorRef: simos.FlavorSmall, ImageRef: simos.ImageDebian12, Min: 3, Max: 3,
		UserData: []byte(base64.StdEncoding.EncodeToString(ud)),
	}, nil).Extract(); err != nil {
		t.Fatal(err)
	}
	if got := sim.Calls("servers.create"); got != 1 {
		t.Errorf("servers.create = %d, want 1", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		back.mu.Lock()
		n := len(back.started)
		back.mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, s := range listAll(t, compute, servers.ListOpts{}) {
		back.mu.Lock()
		got := back.started[s.ID]
		back.mu.Unlock()
		cfg, err := userdata.Decode(got.UserData, got.LaunchIndex)
		if err != nil {
			t.Fatalf("server %s: backing user-data: %v", s.Name, err)
		}
		i, _ := strconv.Atoi(strings.TrimPrefix(s.Name, "b-"))
		if s.LaunchIndex == nil || *s.LaunchIndex != i-1 || got.LaunchIndex != i-1 || cfg.Hostname != string(specs[i-1].ID) {
			t.Errorf("server %s (launch index %v) booted machine %s", s.Name, s.LaunchIndex, cfg.Hostname)
		}
	}
	// Nova caps user_data at 65535 bytes once base64-encoded.
	err = servers.Create(t.Context(), compute, servers.CreateOpts{
		Name: "big", FlavorRef: simos.FlavorSmall, ImageRef: simos.ImageDebian12,
		UserData: []byte(base64.StdEncoding.EncodeToString(make([]byte, 50000))),
	}, nil).Err
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("oversized user_data: %v, want 400", err)
	}
}
