package openstack

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"

	"github.com/provisionhq/provision/cloudsim"
	simos "github.com/provisionhq/provision/cloudsim/openstack"
	"github.com/provisionhq/provision/cloudsim/userdata"
	"github.com/provisionhq/provision/internal/retry"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/hostkey"
	"github.com/provisionhq/provision/providers/providertest"
)

var goodSettings = providers.Settings{"flavor": "m1.small", "image": "debian-12", "networks": []any{"private"}}

// emulator starts cloudsim/openstack on an httptest server.
func emulator(t *testing.T, f cloudsim.Faults, opts simos.Options) (*cloudsim.Sim, string) {
	t.Helper()
	sim := cloudsim.NewSim(f, 42)
	return sim, serve(t, simos.New(sim, opts))
}

// serve starts srv on an httptest server and returns its URL.
func serve(t *testing.T, srv *simos.Server) string {
	t.Helper()
	ts := httptest.NewServer(srv)
	t.Cleanup(func() { ts.Close(); srv.Close() })
	return ts.URL
}

// testConfig is what New would read from OS_* variables, with fast polls.
func testConfig(url string) config {
	return config{
		auth: gophercloud.AuthOptions{
			IdentityEndpoint: url + "/identity/v3", Username: "demo", Password: "secret", DomainName: "Default",
			Scope: &gophercloud.AuthScope{ProjectName: "demo", DomainName: "Default"},
		},
		endpoint:      gophercloud.EndpointOpts{Region: "RegionOne"},
		poll:          20 * time.Millisecond,
		backoff:       retry.Policy{Initial: 2 * time.Millisecond, Max: 20 * time.Millisecond, MaxAttempts: 30},
		maxRetryAfter: 5 * time.Millisecond,
		rate:          1000, burst: 1000,
	}
}

func testProvider(t *testing.T, url, cluster string) *Provider {
	t.Helper()
	p, err := newProvider(t.Context(), providers.Env{Cluster: cluster}, testConfig(url))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHTTPClientCarriesRequests: every API request of a provider built
// with Env.HTTPClient, Keystone's included, goes through that client (an
// emulator served in the same process has no other way in).
func TestHTTPClientCarriesRequests(t *testing.T) {
	sim, url := emulator(t, cloudsim.Faults{}, simos.Options{})
	rt := &providertest.Requests{}
	p, err := newProvider(t.Context(), providers.Env{Cluster: "client", HTTPClient: &http.Client{Transport: rt}}, testConfig(url))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(t.Context(), specs(t, "client", "workers", 2)); err != nil {
		t.Fatal(err)
	}
	rt.CarriedAll(t, sim.CallCounts())
}

func specs(t *testing.T, cluster, pool string, n int) []providers.MachineSpec {
	t.Helper()
	var out []providers.MachineSpec
	for i := range n {
		hk, err := hostkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, providers.MachineSpec{
			ID: providers.MachineID(fmt.Sprintf("%s-%s-%d", cluster, pool, i)), Cluster: cluster, Pool: pool,
			Role: providers.RoleWorker, Settings: goodSettings, SSHUser: "debian",
			AuthorizedKeys: []string{hk.Public}, HostKey: hk,
		})
	}
	return out
}

func TestConformance(t *testing.T) {
	t.Parallel()
	// A page size of 2 makes every list paginate.
	_, url := emulator(t, cloudsim.Faults{PendingFor: 100 * time.Millisecond, InvisibleFor: 50 * time.Millisecond},
		simos.Options{MaxLimit: 2})
	p := testProvider(t, url, "conf")
	providertest.Run(t, p, providertest.Options{
		Cluster: "conf", Settings: goodSettings,
		InvalidSettings: providers.Settings{"flavor": "m1.small"}, // no image
		Check:           CheckSettings,
		Timeout:         time.Minute,
		ReportsRunning:  true,
	})
}

// recordingBacking records what each server's host was started with.
type recordingBacking struct {
	mu      sync.Mutex
	started map[string]cloudsim.Boot // server ID → user-data, launch index
}

func (b *recordingBacking) Start(_ context.Context, id string, boot cloudsim.Boot) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.started[id] = boot
	return fmt.Sprintf("10.0.0.%d", len(b.started)+1), nil
}

func (b *recordingBacking) Stop(context.Context, string) error { return nil }

// TestCreateIsOneCallPerBatch pins the batch design: one servers.create
// for a pool's batch (each server boots its own machine's host key), one
// list to reconcile, lists (not per-server GETs) to wait, nothing created
// on a rerun, and a partially existing batch creates only what is missing.
func TestCreateIsOneCallPerBatch(t *testing.T) {
	t.Parallel()
	back := &recordingBacking{started: map[string]cloudsim.Boot{}}
	sim, url := emulator(t, cloudsim.Faults{PendingFor: 50 * time.Millisecond}, simos.Options{Backing: back})
	p := testProvider(t, url, "batch")
	ss := specs(t, "batch", "w", 5)
	ms, err := p.Create(t.Context(), ss)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 5 {
		t.Fatalf("got %d machines", len(ms))
	}
	if got := sim.Calls("servers.create"); got != 1 {
		t.Errorf("servers.create = %d, want 1", got)
	}
	back.mu.Lock()
	for i, m := range ms {
		// Decoded as cloud-init on the server would, not with the
		// provider's own cloudinit package.
		boot := back.started[m.ProviderID]
		cfg, err := userdata.Decode(boot.UserData, boot.LaunchIndex)
		if err != nil {
			t.Fatalf("machine %s: backing user-data: %v", m.ID, err)
		}
		hk, err := cfg.HostKey()
		if m.ID != ss[i].ID || err != nil || hk.Public != ss[i].HostKey.Public || cfg.Hostname != string(ss[i].ID) {
			t.Errorf("machine %s (server %s) booted host %s with key %q (%v), want its own", ss[i].ID, m.ProviderID, cfg.Hostname, hk.Public, err)
		}
	}
	back.mu.Unlock()
	if got := sim.Calls("servers.get"); got != 0 {
		t.Errorf("servers.get = %d, want 0 (waiting lists)", got)
	}
	if got := sim.Calls("tokens.create"); got != 1 {
		t.Errorf("tokens.create = %d, want 1", got)
	}
	lists := sim.Calls("servers.list")
	if lists < 2 || lists > 20 {
		t.Errorf("servers.list = %d, want a reconcile list plus a few poll rounds", lists)
	}
	flavors := sim.Calls("flavors.list")
	// A rerun lists once and creates nothing; names are cached.
	again, err := p.Create(t.Context(), ss)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ms {
		if again[i].ProviderID != ms[i].ProviderID {
			t.Errorf("rerun: machine %s is %s, was %s", ms[i].ID, again[i].ProviderID, ms[i].ProviderID)
		}
	}
	if got := sim.Calls("servers.create"); got != 1 {
		t.Errorf("servers.create after rerun = %d, want 1", got)
	}
	if got := sim.Calls("flavors.list"); got != flavors {
		t.Errorf("flavors listed again on rerun (%d → %d)", flavors, got)
	}
	// Growing the pool to 8 creates the 3 missing machines as one batch.
	more := append(ss, specs(t, "batch", "w", 8)[5:]...)
	grown, err := p.Create(t.Context(), more)
	if err != nil {
		t.Fatal(err)
	}
	if got := sim.Calls("servers.create"); got != 2 {
		t.Errorf("servers.create after growing = %d, want 2", got)
	}
	for i, m := range grown {
		if m.ID != more[i].ID || (i < 5 && m.ProviderID != ms[i].ProviderID) {
			t.Errorf("grown machine %d: %s/%s", i, m.ID, m.ProviderID)
		}
	}
	all, err := p.List(t.Context(), providers.Selector{Cluster: "batch"})
	if err != nil || len(all) != 8 {
		t.Fatalf("List = %d machines, %v; want 8", len(all), err)
	}
	ids := make([]providers.MachineID, len(more))
	for i, s := range more {
		ids[i] = s.ID
	}
	if err := p.Delete(t.Context(), ids); err != nil {
		t.Fatal(err)
	}
	if all, err := p.List(t.Context(), providers.Selector{Cluster: "batch"}); err != nil || len(all) != 0 {
		t.Fatalf("after Delete: %d machines, %v", len(all), err)
	}
}

// TestBigBatchSplitsForUserDataLimit: Nova caps user_data at 64 KiB
// (base64), so a big pool takes a few creates, not one per machine.
func TestBigBatchSplitsForUserDataLimit(t *testing.T) {
	t.Parallel()
	sim, url := emulator(t, cloudsim.Faults{}, simos.Options{})
	p := testProvider(t, url, "big")
	ss := specs(t, "big", "w", 400)
	ms, err := p.Create(t.Context(), ss)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != len(ss) {
		t.Fatalf("got %d machines, want %d", len(ms), len(ss))
	}
	for i := range ms {
		if ms[i].ID != ss[i].ID {
			t.Fatalf("machine %d is %s, want %s", i, ms[i].ID, ss[i].ID)
		}
	}
	got := sim.Calls("servers.create")
	if got < 2 || got > 10 {
		t.Errorf("servers.create = %d for 400 machines, want a few (split by user_data size)", got)
	}
	t.Logf("400 machines: %d servers.create", got)
}

func TestThrottledAndInvisibleConverges(t *testing.T) {
	t.Parallel()
	sim, url := emulator(t, cloudsim.Faults{ThrottleRate: 0.3, InvisibleFor: 2 * time.Second, PendingFor: 200 * time.Millisecond},
		simos.Options{MaxLimit: 3})
	p := testProvider(t, url, "flaky")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ss := specs(t, "flaky", "w", 4)
	ms, err := p.Create(ctx, ss)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.Create(ctx, ss)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ms {
		if ms[i].ID != ss[i].ID || again[i].ProviderID != ms[i].ProviderID {
			t.Errorf("machine %d: %s/%s then %s", i, ms[i].ID, ms[i].ProviderID, again[i].ProviderID)
		}
	}
	all, err := p.List(ctx, providers.Selector{Cluster: "flaky"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Errorf("cluster has %d servers, want 4 (no duplicates)", len(all))
	}
	// One batch: throttled attempts are counted too, so at least one.
	if got := sim.Calls("servers.create"); got < 1 {
		t.Errorf("servers.create = %d", got)
	}
	t.Logf("calls: %v", sim.CallCounts())
	if err := p.Delete(ctx, []providers.MachineID{ss[0].ID, ss[1].ID, ss[2].ID, ss[3].ID}); err != nil {
		t.Fatal(err)
	}
}

func TestQuota(t *testing.T) {
	t.Parallel()
	sim, url := emulator(t, cloudsim.Faults{InstanceQuota: 2}, simos.Options{})
	p := testProvider(t, url, "quota")
	ms, err := p.Create(t.Context(), specs(t, "quota", "workers", 3))
	if !errors.Is(err, providers.ErrQuota) {
		t.Fatalf("Create = %v, want ErrQuota", err)
	}
	msg := err.Error()
	for _, want := range []string{"openstack", "RegionOne", `pool "workers"`, `quota "instances"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Cloud != "openstack" || pe.Pool != "workers" {
		t.Errorf("error %#v is not a *providers.Error for the pool", err)
	}
	if len(ms) != 2 {
		t.Errorf("got %d machines, want the 2 within quota", len(ms))
	}
	// The batch of 3 is refused whole; its first half (2) fits, the last
	// machine does not.
	if got := sim.Calls("servers.create"); got != 3 {
		t.Errorf("servers.create = %d, want 3 (batch, then halves)", got)
	}
}

func TestNoCapacity(t *testing.T) {
	t.Parallel()
	_, url := emulator(t, cloudsim.Faults{NoCapacity: true, PendingFor: 30 * time.Millisecond}, simos.Options{})
	p := testProvider(t, url, "cap")
	_, err := p.Create(t.Context(), specs(t, "cap", "w", 2))
	if !errors.Is(err, providers.ErrCapacity) {
		t.Fatalf("Create = %v, want ErrCapacity", err)
	}
	// The failed servers are deleted: nothing leaks.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ms, err := p.List(t.Context(), providers.Selector{Cluster: "cap"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("failed servers left behind: %v", ms)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUnknownNamesAreInvalidSpec(t *testing.T) {
	t.Parallel()
	_, url := emulator(t, cloudsim.Faults{}, simos.Options{})
	p := testProvider(t, url, "bad")
	for _, set := range []providers.Settings{
		{"flavor": "m9.huge", "image": "debian-12"},
		{"flavor": "m1.small", "image": "windows"},
		{"flavor": "m1.small", "image": "debian-12", "networks": []any{"nope"}},
		{"flavor": "m1.small", "image": "debian-12", "flavour": "typo"},
	} {
		ss := specs(t, "bad", "w", 1)
		ss[0].Settings = set
		if _, err := p.Create(t.Context(), ss); !errors.Is(err, providers.ErrInvalidSpec) {
			t.Errorf("Create(%v) = %v, want ErrInvalidSpec", set, err)
		}
	}
	ss := specs(t, "bad", "w", 1)
	ss[0].Settings = providers.Settings{"flavor": "m1.small", "image": "debian-12", "region": "Atlantis"}
	if _, err := p.Create(t.Context(), ss); !errors.Is(err, providers.ErrInvalidSpec) {
		t.Errorf("Create in an unknown region = %v, want ErrInvalidSpec", err)
	}
	// IDs work as well as names; key_name, security groups and metadata
	// reach Nova.
	c, err := p.clientsFor(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := keypairs.Create(t.Context(), c.compute, keypairs.CreateOpts{Name: "ops"}).Err; err != nil {
		t.Fatal(err)
	}
	if err := groups.Create(t.Context(), c.network, groups.CreateOpts{Name: "ssh"}).Err; err != nil {
		t.Fatal(err)
	}
	ss = specs(t, "bad", "ids", 1)
	ss[0].Settings = providers.Settings{"flavor": simos.FlavorMedium, "image": simos.ImageDebian12,
		"networks": []any{simos.NetworkPrivate}, "key_name": "ops", "security_groups": []any{"ssh"}}
	ms, err := p.Create(t.Context(), ss)
	if err != nil {
		t.Fatalf("Create by IDs: %v", err)
	}
	srv, err := servers.Get(t.Context(), c.compute, ms[0].ProviderID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if srv.Name != string(ss[0].ID) || srv.KeyName != "ops" || len(srv.SecurityGroups) != 1 ||
		srv.Metadata[metaMachine] != string(ss[0].ID) || srv.Metadata[metaPool] != "ids" || srv.Metadata[metaCluster] != "bad" {
		t.Errorf("server %s: key %q groups %v metadata %v", srv.Name, srv.KeyName, srv.SecurityGroups, srv.Metadata)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestInvalidReferencesGolden pins the one-line message a user gets for
// each reference the cloud does not have: every one is ErrInvalidSpec and
// fails before any server is created.
func TestInvalidReferencesGolden(t *testing.T) {
	t.Parallel()
	sim, url := emulator(t, cloudsim.Faults{}, simos.Options{})
	p := testProvider(t, url, "refs")
	base := providers.Settings{"flavor": "m1.small", "image": "debian-12", "networks": []any{"private"}}
	with := func(k string, v any) providers.Settings {
		out := providers.Settings{}
		for bk, bv := range base {
			out[bk] = bv
		}
		out[k] = v
		return out
	}
	cases := []struct {
		name string
		set  providers.Settings
	}{
		{"flavor", with("flavor", "m9.huge")},
		{"image", with("image", "windows-11")},
		{"network", with("networks", []any{"private", "dmz"})},
		{"key pair", with("key_name", "nobody")},
		{"security group", with("security_groups", []any{"web"})},
	}
	var got strings.Builder
	for _, c := range cases {
		ss := specs(t, "refs", "w", 1)
		ss[0].Settings = c.set
		_, err := p.Create(t.Context(), ss)
		if !errors.Is(err, providers.ErrInvalidSpec) {
			t.Errorf("%s: Create = %v, want ErrInvalidSpec", c.name, err)
		}
		if err != nil {
			fmt.Fprintf(&got, "%s: %v\n", c.name, err)
		}
	}
	if n := sim.Calls("servers.create"); n != 0 {
		t.Errorf("servers.create called %d times for invalid references, want 0", n)
	}
	golden := filepath.Join("testdata", "invalid_references.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("messages differ from %s:\ngot:\n%s\nwant:\n%s", golden, got.String(), want)
	}
}

func TestClassify(t *testing.T) {
	p := &Provider{}
	h := http.Header{}
	h.Set("Retry-After", "3")
	cases := []struct {
		code     int
		creating bool
		kind     error
	}{
		{429, false, providers.ErrThrottled},
		{413, false, providers.ErrThrottled},
		{403, true, providers.ErrQuota},
		{404, false, providers.ErrNotFound},
		{400, true, providers.ErrInvalidSpec},
		{403, false, nil},
		{409, true, nil},
		{500, true, providers.ErrUnavailable},
		{503, false, providers.ErrUnavailable},
	}
	for _, c := range cases {
		err := p.classify(gophercloud.ErrUnexpectedResponseCode{Actual: c.code, ResponseHeader: h,
			Body: []byte(`{"forbidden":{"code":403,"message":"Quota exceeded for cores: Requested 4, but already used 20 of 20 cores"}}`)},
			"r1", "p1", c.creating)
		var pe *providers.Error
		isPE := errors.As(err, &pe)
		if c.kind == nil {
			if isPE {
				t.Errorf("%d: got %v, want an untyped error", c.code, err)
			}
			continue
		}
		if !errors.Is(err, c.kind) {
			t.Errorf("%d: got %v, want %v", c.code, err, c.kind)
		}
		if c.kind == providers.ErrThrottled && pe.RetryAfter != 3*time.Second {
			t.Errorf("%d: RetryAfter %v", c.code, pe.RetryAfter)
		}
		if c.kind == providers.ErrQuota && !strings.Contains(err.Error(), `quota "cores"`) {
			t.Errorf("quota error %q does not name the quota", err)
		}
	}
	// Keystone failing the token of a reauthentication is unavailability.
	reauth := &gophercloud.ErrUnableToReauthenticate{}
	reauth.ErrOriginal = gophercloud.ErrUnexpectedResponseCode{Actual: 401}
	reauth.ErrReauth = gophercloud.ErrUnexpectedResponseCode{Actual: 503, Body: []byte(`{"error":{"code":503}}`)}
	if err := p.classify(fmt.Errorf("list: %w", reauth), "r1", "p1", true); !errors.Is(err, providers.ErrUnavailable) {
		t.Errorf("reauthentication refused with 503: got %v, want ErrUnavailable", err)
	}
}

// TestNewFromEnvironment runs New as a user would: OS_* variables
// (password, then application credential) and clouds.yaml. Not parallel:
// it sets the environment.
func TestNewFromEnvironment(t *testing.T) {
	_, url := emulator(t, cloudsim.Faults{}, simos.Options{Password: "s3cret"})
	for _, v := range []string{"OS_CLOUD", "OS_CLIENT_CONFIG_FILE", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME",
		"OS_USER_DOMAIN_NAME", "OS_PROJECT_DOMAIN_NAME", "OS_REGION_NAME", "OS_APPLICATION_CREDENTIAL_ID",
		"OS_APPLICATION_CREDENTIAL_SECRET", "OS_AUTH_URL", "OS_PROJECT_ID", "OS_USER_ID", "OS_DOMAIN_NAME", "OS_INTERFACE"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	check := func(t *testing.T) {
		t.Helper()
		p, err := New(t.Context(), providers.Env{Cluster: "env"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.List(t.Context(), providers.Selector{Cluster: "env"}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("password", func(t *testing.T) {
		t.Setenv("OS_AUTH_URL", url+"/identity/v3")
		t.Setenv("OS_USERNAME", "demo")
		t.Setenv("OS_PASSWORD", "s3cret")
		t.Setenv("OS_PROJECT_NAME", "demo")
		t.Setenv("OS_USER_DOMAIN_NAME", "Default")
		t.Setenv("OS_PROJECT_DOMAIN_NAME", "Default")
		t.Setenv("OS_REGION_NAME", "RegionOne")
		check(t)
	})
	t.Run("wrong password", func(t *testing.T) {
		t.Setenv("OS_AUTH_URL", url+"/identity/v3")
		t.Setenv("OS_USERNAME", "demo")
		t.Setenv("OS_PASSWORD", "nope")
		if _, err := New(t.Context(), providers.Env{}); err == nil {
			t.Fatal("New with a wrong password succeeded")
		}
	})
	t.Run("application credential", func(t *testing.T) {
		t.Setenv("OS_AUTH_URL", url+"/identity/v3")
		t.Setenv("OS_APPLICATION_CREDENTIAL_ID", "ac-1")
		t.Setenv("OS_APPLICATION_CREDENTIAL_SECRET", "s3cret")
		check(t)
	})
	t.Run("clouds.yaml", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "clouds.yaml")
		yaml := fmt.Sprintf(`clouds:
  sim:
    auth:
      auth_url: %s/identity/v3
      username: demo
      password: s3cret
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
`, url)
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("OS_CLOUD", "sim")
		t.Setenv("OS_CLIENT_CONFIG_FILE", file)
		check(t)
	})
	t.Run("nothing set", func(t *testing.T) {
		if _, err := New(t.Context(), providers.Env{}); err == nil || !strings.Contains(err.Error(), "OS_CLOUD") {
			t.Fatalf("New with no credentials = %v", err)
		}
	})
}

// TestLive runs the conformance suite against a real cloud from the
// standard credential chain. PROVISION_LIVE_OPENSTACK_FLAVOR, _IMAGE and
// _NETWORK name the pool's settings (m1.small, debian-12, none by default).
func TestLive(t *testing.T) {
	if os.Getenv("PROVISION_LIVE_OPENSTACK") != "1" {
		t.Skip("set PROVISION_LIVE_OPENSTACK=1 (and OS_CLOUD or OS_*) to run against a real cloud")
	}
	cluster := fmt.Sprintf("ptest-%d", time.Now().Unix())
	p, err := New(t.Context(), providers.Env{Cluster: cluster})
	if err != nil {
		t.Fatal(err)
	}
	set := providers.Settings{
		"flavor": envOr("PROVISION_LIVE_OPENSTACK_FLAVOR", "m1.small"),
		"image":  envOr("PROVISION_LIVE_OPENSTACK_IMAGE", "debian-12"),
	}
	if n := os.Getenv("PROVISION_LIVE_OPENSTACK_NETWORK"); n != "" {
		set["networks"] = []any{n}
	}
	providertest.Run(t, p, providertest.Options{
		Cluster: cluster, Settings: set, InvalidSettings: providers.Settings{"image": "x"}, Timeout: 20 * time.Minute,
	})
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
