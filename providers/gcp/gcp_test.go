package gcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/provisionhq/provision/cloudsim"
	"github.com/provisionhq/provision/cloudsim/gce"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/gate"
	"github.com/provisionhq/provision/providers/hostkey"
	"github.com/provisionhq/provision/providers/providertest"
)

const testZone = "europe-west1-b"

func poolSettings() providers.Settings {
	return providers.Settings{
		"project": "sim-project", "zone": testZone, "machine_type": "e2-medium",
		"image": "projects/debian-cloud/global/images/family/debian-12",
	}
}

// simProvider starts cloudsim/gce on an httptest server and a provider
// pointed at it. The endpoint override is process-wide (an env var), so
// these tests do not run in parallel.
func simProvider(t *testing.T, f cloudsim.Faults, cluster string) (*Provider, *cloudsim.Sim, *gce.Server) {
	t.Helper()
	return seededSimProvider(t, f, 1, cluster)
}

// seededSimProvider is simProvider with the Sim's seed chosen.
func seededSimProvider(t *testing.T, f cloudsim.Faults, seed uint64, cluster string) (*Provider, *cloudsim.Sim, *gce.Server) {
	t.Helper()
	return envSimProvider(t, f, seed, providers.Env{Cluster: cluster})
}

// envSimProvider is seededSimProvider with the provider's Env chosen.
func envSimProvider(t *testing.T, f cloudsim.Faults, seed uint64, env providers.Env) (*Provider, *cloudsim.Sim, *gce.Server) {
	t.Helper()
	sim := cloudsim.NewSim(f, seed)
	srv := gce.New(sim, gce.Options{Project: "sim-project"})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	t.Setenv(EnvEndpoint, hs.URL)
	t.Setenv(EnvProject, "")
	p, err := New(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	fast(p)
	t.Cleanup(func() { _ = p.Close() })
	return p, sim, srv
}

// TestHTTPClientCarriesRequests: every API request of a provider built
// with Env.HTTPClient goes through that client (an emulator served in the
// same process has no other way in).
func TestHTTPClientCarriesRequests(t *testing.T) {
	rt := &providertest.Requests{}
	p, sim, _ := envSimProvider(t, cloudsim.Faults{}, 1, providers.Env{Cluster: "client", HTTPClient: &http.Client{Transport: rt}})
	if _, err := p.Create(t.Context(), specs(t, "client", "workers", 2)); err != nil {
		t.Fatal(err)
	}
	rt.CarriedAll(t, sim.CallCounts())
}

// fast shortens the provider's retry backoff and polls for tests.
func fast(p *Provider) {
	o := gateOptions(p.log)
	o.Retry.Initial, o.Retry.Max = 20*time.Millisecond, 300*time.Millisecond
	p.gate = gate.New(o)
	p.poll.Initial, p.poll.Max = 20*time.Millisecond, 300*time.Millisecond
}

func specs(t *testing.T, cluster, pool string, n int) []providers.MachineSpec {
	t.Helper()
	login, err := hostkey.Generate() // any public key will do as a login key
	if err != nil {
		t.Fatal(err)
	}
	var out []providers.MachineSpec
	for i := range n {
		hk, err := hostkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, providers.MachineSpec{
			ID: providers.MachineID(fmt.Sprintf("%s-%s-%d", cluster, pool, i)), Cluster: cluster, Pool: pool,
			Role: providers.RoleWorker, Settings: poolSettings(), SSHUser: "admin",
			AuthorizedKeys: []string{login.Public}, HostKey: hk,
		})
	}
	return out
}

func TestConformance(t *testing.T) {
	p, sim, _ := simProvider(t, cloudsim.Faults{PendingFor: 100 * time.Millisecond}, "conf")
	invalid := poolSettings()
	delete(invalid, "machine_type")
	providertest.Run(t, p, providertest.Options{
		Cluster: "conf", Settings: poolSettings(), InvalidSettings: invalid, Check: CheckSettings, Timeout: time.Minute,
		ReportsRunning: true,
	})
	// Pool a (2 machines) is one bulkInsert, pool b (1 machine) one insert.
	if got := sim.Calls("instances.bulkInsert"); got != 1 {
		t.Errorf("bulkInsert calls = %d, want 1", got)
	}
}

func TestPoolIsOneBulkInsert(t *testing.T) {
	p, sim, srv := simProvider(t, cloudsim.Faults{}, "bulk")
	ss := specs(t, "bulk", "workers", 7)
	ms, err := p.Create(t.Context(), ss)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 7 {
		t.Fatalf("got %d machines", len(ms))
	}
	if got := sim.Calls("instances.bulkInsert"); got != 1 {
		t.Errorf("bulkInsert calls = %d, want 1", got)
	}
	if got := sim.Calls("instances.insert"); got != 0 {
		t.Errorf("insert calls = %d, want 0", got)
	}
	// Each instance boots with its own host key (the emulator's guest
	// resolves the per-name item, as the selector script does).
	for _, in := range srv.Instances() {
		var own string
		for _, it := range in.GetMetadata().GetItems() {
			if it.GetKey() == userDataPrefix+in.GetName() {
				own = it.GetValue()
			}
		}
		if !strings.Contains(own, "#cloud-config") {
			t.Errorf("instance %s: no own user-data", in.GetName())
		}
		if in.GetLabels()[labelCluster] != "bulk" || in.GetLabels()[labelPool] != "workers" {
			t.Errorf("instance %s: labels %v", in.GetName(), in.GetLabels())
		}
	}
}

// TestBatchSizeCapsEachBulkInsert: a pool larger than its batch_size is
// ceil(N / batch_size) create calls, each as full as it may be (a pool
// over the batch size once made one call per machine past the first
// batch), the last one short.
func TestBatchSizeCapsEachBulkInsert(t *testing.T) {
	p, sim, srv := simProvider(t, cloudsim.Faults{}, "capped")
	ss := specs(t, "capped", "workers", 7)
	for i := range ss {
		ss[i].Settings = poolSettings()
		ss[i].Settings["batch_size"] = 3
	}
	ms, err := p.Create(t.Context(), ss)
	if err != nil || len(ms) != 7 {
		t.Fatalf("Create = %d machines, %v", len(ms), err)
	}
	if b, i := sim.Calls("instances.bulkInsert"), sim.Calls("instances.insert"); b != 2 || i != 1 {
		t.Errorf("bulkInsert calls = %d, insert calls = %d; want 2 (of 3) and 1 (the seventh)", b, i)
	}
	if n := len(srv.Instances()); n != 7 {
		t.Errorf("%d instances, want 7", n)
	}
}

func TestThrottledAndEventuallyConsistentConverges(t *testing.T) {
	p, sim, srv := simProvider(t, cloudsim.Faults{ThrottleRate: 0.3, InvisibleFor: 2 * time.Second, PendingFor: time.Second}, "flaky")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ss := specs(t, "flaky", "workers", 5)
	first, err := p.Create(ctx, ss)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if n := len(srv.Instances()); n != 5 {
		t.Fatalf("%d instances exist, want 5", n)
	}
	again, err := p.Create(ctx, ss)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	for i := range first {
		if first[i].ProviderID != again[i].ProviderID || first[i].Address != again[i].Address {
			t.Errorf("machine %s: %v then %v", first[i].ID, first[i], again[i])
		}
	}
	if n := len(srv.Instances()); n != 5 {
		t.Fatalf("after a second Create %d instances exist, want 5", n)
	}
	t.Logf("calls: %v", sim.CallCounts())
	if err := p.Delete(ctx, machineIDs(ss)); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if n := len(srv.Instances()); n != 0 {
		t.Fatalf("after Delete %d instances exist", n)
	}
}

func TestQuotaIsOneLineNamingEverything(t *testing.T) {
	p, _, srv := simProvider(t, cloudsim.Faults{InstanceQuota: 2}, "quota")
	_, err := p.Create(t.Context(), specs(t, "quota", "workers", 3))
	if !errors.Is(err, providers.ErrQuota) {
		t.Fatalf("Create = %v, want ErrQuota", err)
	}
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Cloud != "gcp" || pe.Location != testZone || pe.Pool != "workers" {
		t.Fatalf("error = %#v", pe)
	}
	msg := err.Error()
	for _, want := range []string{"gcp", testZone, `"workers"`, "compute.googleapis.com/instances", "QUOTA_EXCEEDED"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if n := len(srv.Instances()); n != 0 {
		t.Errorf("%d instances leaked", n)
	}
}

func TestCapacity(t *testing.T) {
	p, _, _ := simProvider(t, cloudsim.Faults{NoCapacity: true}, "cap")
	_, err := p.Create(t.Context(), specs(t, "cap", "workers", 2))
	if !errors.Is(err, providers.ErrCapacity) || !strings.Contains(err.Error(), "ZONE_RESOURCE_POOL_EXHAUSTED") {
		t.Fatalf("Create = %v, want ErrCapacity", err)
	}
}

func TestRequestIDIsDeterministic(t *testing.T) {
	a := requestID("p", "z", []string{"b", "a"})
	if a != requestID("p", "z", []string{"a", "b"}) {
		t.Error("requestID depends on order")
	}
	if a == requestID("p", "z", []string{"a"}) || a == requestID("p", "z2", []string{"a", "b"}) {
		t.Error("requestID collides")
	}
}

func TestValidateSettings(t *testing.T) {
	p, _, _ := simProvider(t, cloudsim.Faults{}, "v")
	for name, s := range map[string]providers.Settings{
		"unknown key": {"project": "p", "zone": testZone, "machine_type": "e2", "image": "i", "zonee": "x"},
		"no image":    {"project": "p", "zone": testZone, "machine_type": "e2"},
		"bad zone":    {"project": "p", "zone": "europe", "machine_type": "e2", "image": "i"},
	} {
		if _, err := decodeSettings(s, p.project); !errors.Is(err, providers.ErrInvalidSpec) {
			t.Errorf("%s: %v, want ErrInvalidSpec", name, err)
		}
	}
	if _, err := decodeSettings(poolSettings(), p.project); err != nil {
		t.Error(err)
	}
}

// TestLive runs the conformance suite against real GCE. It needs
// PROVISION_LIVE_GCP=1, application default credentials, and
// PROVISION_GCP_LIVE_ZONE/_IMAGE/_MACHINE_TYPE or the defaults below.
func TestLive(t *testing.T) {
	if os.Getenv("PROVISION_LIVE_GCP") != "1" {
		t.Skip("set PROVISION_LIVE_GCP=1 (and application default credentials) to run against GCE")
	}
	get := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	cluster := fmt.Sprintf("live-%d", time.Now().Unix())
	p, err := New(t.Context(), providers.Env{Cluster: cluster})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	set := providers.Settings{
		"project": get(EnvProject, ""), "zone": get("PROVISION_GCP_LIVE_ZONE", "europe-west1-b"),
		"machine_type": get("PROVISION_GCP_LIVE_MACHINE_TYPE", "e2-micro"),
		"image":        get("PROVISION_GCP_LIVE_IMAGE", "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"),
	}
	providertest.Run(t, p, providertest.Options{Cluster: cluster, Settings: set, Timeout: 15 * time.Minute})
}

func machineIDs(ss []providers.MachineSpec) []providers.MachineID {
	out := make([]providers.MachineID, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}
